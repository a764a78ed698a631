"""``python -m scratchllm.serve ckpt_path=… [host=127.0.0.1 port=8000]``: an OpenAI-compatible API and a playground.

Examples::

    python -m scratchllm.serve                                    # newest logs/train/**/last.ckpt on 127.0.0.1:8000
    python -m scratchllm.serve ckpt_path=path/to/run port=8080 dtype=bfloat16
    python -m scratchllm.serve ckpt_path=path/to/run quantize=int8              # weight-only int8, as generate

Then open http://127.0.0.1:8000/ or point any OpenAI client at ``base_url="http://127.0.0.1:8000/v1"``.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from scratchllm.cli import precheck_overrides, report_user_errors
from scratchllm.paths import config_dir


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="serve")
def _main(cfg: DictConfig) -> None:
    from scratchllm.serving.server import ServeOptions, serve

    with report_user_errors():
        values = OmegaConf.to_container(cfg, resolve=True)
        assert isinstance(values, dict)
        serve(ServeOptions.from_mapping(values))


def main() -> None:
    precheck_overrides(str(config_dir()), "serve", sys.argv[1:])
    _main()


if __name__ == "__main__":
    main()
