"""``python -m scratchllm.plot what=loss|attention|positions|tokens [run=…] [ckpt_path=…] [out=…]``: one PNG.

Examples::

    python -m scratchllm.plot run=logs/train/runs/<time>                     # its loss curves → plots/loss.png
    python -m scratchllm.plot run=logs/train/multiruns/<time>                # every run of a sweep in one figure
    python -m scratchllm.plot what=attention run=logs/train/runs/<time> prompt="ROMEO:"
    python -m scratchllm.plot what=positions ckpt_path=last
    python -m scratchllm.plot what=tokens ckpt_path=last prompt="To be, or not to be" out=tokens.png
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from scratchllm.cli import precheck_overrides, report_user_errors
from scratchllm.paths import config_dir


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="plot")
def _main(cfg: DictConfig) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed (or used)
    from scratchllm.plots.command import PlotOptions, make_plot

    with report_user_errors():
        values = OmegaConf.to_container(cfg, resolve=True)
        assert isinstance(values, dict)
        make_plot(PlotOptions.from_mapping(values))


def main() -> None:
    precheck_overrides(str(config_dir()), "plot", sys.argv[1:])
    _main()


if __name__ == "__main__":
    main()
