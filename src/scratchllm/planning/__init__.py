"""How big a run is: model shape, recipe, per-device memory, time, and the commands that launch it.

Pure arithmetic on a ``ModelConfig`` (no tensors): ``python -m scratchllm.plan params=1b gpus=8 gpu=h100``.
"""

from scratchllm.planning.hardware import ACCELERATORS, get_accelerator
from scratchllm.planning.memory import Memory, activations, memory, per_layer
from scratchllm.planning.recipe import Plan, make_plan
from scratchllm.planning.shape import resolve_shape

__all__ = ["ACCELERATORS", "Memory", "Plan", "activations", "get_accelerator", "make_plan", "memory", "per_layer",
           "resolve_shape"]
