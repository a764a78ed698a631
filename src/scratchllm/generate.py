"""``python -m scratchllm.generate [overrides]``: stream text from a trained checkpoint or a Hugging Face folder.

Examples::

    python -m scratchllm.generate prompt="ROMEO:"                        # newest logs/train/**/last.ckpt
    python -m scratchllm.generate ckpt_path=path/to/run.ckpt max_new_tokens=100 temperature=0.7 top_p=0.9
    python -m scratchllm.generate ckpt_path=hf/gpt2 prompt="Hello" dtype=bfloat16
    python -m scratchllm.generate ckpt_path=hf/char-model tokenizer.path=data_cache/<folder>  # its vocabulary
    python -m scratchllm.generate ckpt_path=hf/gpt2-shaped tokenizer=gpt2
    python -m scratchllm.generate interactive=true < prompts.txt       # one prompt per line, model loaded once

Nothing is written to disk (no Hydra run folder, no log file); text goes to stdout, tokens/s to stderr.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from scratchllm.cli import precheck_overrides, report_user_errors
from scratchllm.paths import config_dir


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="generate")
def _main(cfg: DictConfig) -> None:
    from scratchllm.generation.session import GenerateOptions, run_session

    with report_user_errors():
        values = OmegaConf.to_container(cfg, resolve=True)
        assert isinstance(values, dict)
        run_session(GenerateOptions.from_mapping(values))


def main() -> None:
    precheck_overrides(str(config_dir()), "generate", sys.argv[1:])
    _main()


if __name__ == "__main__":
    main()
