"""``python -m scratchllm.train [overrides]``: compose conf/train.yaml with Hydra and run one training.

Examples::

    python -m scratchllm.train                                   # char-level Shakespeare on the nano model
    python -m scratchllm.train model=micro model.norm=rmsnorm precision=bf16-mixed
    python -m scratchllm.train -m model.norm=layernorm,rmsnorm   # a multirun sweep
    python -m scratchllm.train ckpt_path=last                    # resume the newest run
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from scratchllm.cli import precheck_overrides, report_user_errors, tidy_logging
from scratchllm.paths import config_dir


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def _main(cfg: DictConfig) -> float | None:
    from scratchllm.training.run import train

    tidy_logging()
    with report_user_errors():
        result = train(cfg)
    # Returned to Hydra sweepers (Optuna minimises it).
    return result.get("val_loss")


def main() -> None:
    precheck_overrides(str(config_dir()), "train", sys.argv[1:])
    _main()


if __name__ == "__main__":
    main()
