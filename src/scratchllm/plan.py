"""``python -m scratchllm.plan params=1b gpus=8 gpu=h100``: how to train a model of this size on these devices.

Examples::

    python -m scratchllm.plan params=1b gpus=8 gpu=h100
    python -m scratchllm.plan params=10b gpus=64 gpu=h100 tokens=200b
    python -m scratchllm.plan model=gpt2-124m gpus=8 gpu=a100-40gb out=plans/gpt2

Prints the plan (Markdown) and writes it with its JSON and launch scripts; nothing is trained or loaded.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from scratchllm.cli import precheck_overrides, report_user_errors
from scratchllm.paths import config_dir


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="plan")
def _main(cfg: DictConfig) -> None:
    from scratchllm.model.config import ModelConfig
    from scratchllm.planning import get_accelerator, make_plan, resolve_shape
    from scratchllm.planning.write import write_plan

    with report_user_errors():
        acc = get_accelerator(str(cfg.gpu), peak_tflops=cfg.peak_tflops, memory_gb=cfg.memory_gb, mfu=cfg.mfu)
        model = cfg.get("model")
        model = ModelConfig.from_dict(OmegaConf.to_container(model, resolve=True)) if model else None
        shape = resolve_shape(cfg.params, model, cfg.context, int(cfg.vocab_size))
        plan = make_plan(shape, acc, int(cfg.gpus), tokens=cfg.tokens, precision=str(cfg.precision))
        out = Path(cfg.out or f"plans/{shape.config.name}-{plan.devices}x{acc.name}")
        command = shlex.join(["python", "-m", "scratchllm.plan", *sys.argv[1:]])
        print(write_plan(plan, out, command=command))
        print(f"written: {out}/plan.md, plan.json, launch_torchrun.sh, launch_slurm.sbatch", file=sys.stderr)


def main() -> None:
    precheck_overrides(str(config_dir()), "plan", sys.argv[1:])
    _main()


if __name__ == "__main__":
    main()
