"""AdamW with weight decay on matrices only, and the warmup + cosine learning-rate schedule.

Why decay only matrices: weight decay pulls parameters towards zero, a useful prior for the large projection and
embedding matrices, where it limits how much any one direction can grow. Norm gains (which should sit near 1) and
biases (which shift activations) have no such reason to shrink; decaying them only hurts, so they get 0.

Why warmup then cosine: at step 0 Adam's second-moment estimates are noise, so full-size steps can throw a fresh
model into a bad region; a short linear warmup avoids that. Cosine decay then lowers the step size smoothly so
the model settles into a minimum, ending at a floor (``min_lr_ratio`` × peak) rather than zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import torch
from torch import nn

from scratchllm.errors import ConfigError


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: matrices and embeddings decayed; norm gains and biases (the 1-D ones) not.

    Told apart by module type and name, not ``p.dim()``: under FSDP (``use_orig_params``) the optimizer is built
    after wrapping, when every parameter is a 1-D view of its shard; by dimension nothing would be decayed (and
    an empty group cannot be restored from a sharded checkpoint). Tied weights appear once."""
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        is_norm = isinstance(module, nn.LayerNorm) or "norm" in type(module).__name__.lower()
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            (no_decay if is_norm or name == "bias" else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


FUSED_DEVICES = ("cpu", "cuda")  # where torch's fused AdamW runs (torch ≥ 2.4 on CPU)


def build_adamw(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float = 0.1,
    betas: Iterable[float] = (0.9, 0.95),
    eps: float = 1e-8,
    fused: bool | None = None,
) -> torch.optim.AdamW:
    """AdamW over ``param_groups``. ``fused=None`` picks torch's fused kernel where it has one (CPU and CUDA: one
    pass over parameters, gradients and both moments) and the multi-tensor ``foreach`` one elsewhere, whose every
    operation is another pass over memory. A step with clipping on 2 CPU cores: micro 9.9 ms fused against 40.4 ms
    foreach, gpt2-124m 91 against 644 ms (experiments/bench_adamw.py, results/adamw_2026-12-03.md).
    A resumed run keeps the kind its checkpoint holds (torch restores each parameter group's ``fused``/``foreach``
    flags with its state): a run started with foreach finishes with it, exactly as it would have uninterrupted."""
    if lr <= 0:
        raise ConfigError(f"optim.lr must be positive, got {lr}")
    device_type = next(model.parameters()).device.type
    if fused is None:
        fused = device_type in FUSED_DEVICES
    kwargs: dict = {"fused": True} if fused else {"foreach": True}
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=tuple(betas), eps=eps, **kwargs)


@dataclass(frozen=True)
class WarmupCosine:
    """lr multiplier at optimizer step ``s``: linear 0→1 over ``warmup_steps``, then cosine 1→``min_lr_ratio`` at
    ``total_steps``, then flat at the floor. A plain callable so ``LambdaLR`` checkpoints it by its step count."""

    warmup_steps: int
    total_steps: int
    min_lr_ratio: float = 0.1
    decay: str = "cosine"  # cosine | linear | constant

    def __post_init__(self) -> None:
        if self.total_steps <= 0:
            raise ConfigError(
                "the cosine schedule needs a positive trainer.max_steps (streamed data has no epoch length)"
            )
        if self.warmup_steps < 0 or not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError("scheduler.warmup_steps must be ≥ 0 and scheduler.min_lr_ratio in [0, 1]")
        if self.decay not in ("cosine", "linear", "constant"):
            raise ConfigError(f"scheduler.decay={self.decay!r}; choose one of: cosine, linear, constant")

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.decay == "constant":
            return 1.0
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        if self.decay == "linear":
            shape = 1.0 - progress
        else:
            shape = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * shape
