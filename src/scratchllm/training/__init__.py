"""Everything Lightning: the LightningModule, optimiser and schedule, callbacks and the run driver."""

from scratchllm.training.callbacks import StepProgressBar, Throughput
from scratchllm.training.module import GPTLitModule, check_same_shape
from scratchllm.training.optim import WarmupCosine, build_adamw, param_groups

__all__ = [
    "GPTLitModule",
    "StepProgressBar",
    "Throughput",
    "WarmupCosine",
    "build_adamw",
    "check_same_shape",
    "param_groups",
]
