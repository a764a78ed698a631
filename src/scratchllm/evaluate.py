"""``python -m scratchllm.evaluate [overrides]``: loss, perplexity and bits per byte on texts, accuracy on tasks.

Examples::

    python -m scratchllm.evaluate tasks=[shakespeare_next_line] texts=[shakespeare_val]      # newest last.ckpt
    python -m scratchllm.evaluate ckpt_path=path/to/run.ckpt texts=[notes/*.txt] stride=64
    python -m scratchllm.evaluate ckpt_path=hf/gpt2 tasks=[my_task.jsonl] out_dir=eval/gpt2
    python -m scratchllm.evaluate ckpt_path=logs/train/runs/<time> run_dir=logs/train/runs/<time> tasks=[...]

The tables go to stdout, progress and notes to stderr; ``out_dir`` gets results.json and results.md.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from scratchllm.cli import precheck_overrides, report_user_errors
from scratchllm.paths import config_dir


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="evaluate")
def _main(cfg: DictConfig) -> None:
    from scratchllm.evaluation.session import EvaluateOptions, run_session

    with report_user_errors():
        values = OmegaConf.to_container(cfg, resolve=True)
        assert isinstance(values, dict)
        run_session(EvaluateOptions.from_mapping(values))


def main() -> None:
    precheck_overrides(str(config_dir()), "evaluate", sys.argv[1:])
    _main()


if __name__ == "__main__":
    main()
