"""The plan: tokens, batch, learning rate and schedule, the cheapest memory configuration that fits, and time.

Every number is paired with the rule that produced it and its source, so a plan can be argued with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from scratchllm.errors import ConfigError
from scratchllm.model.report import flops_per_token, param_report
from scratchllm.planning.hardware import Accelerator
from scratchllm.planning.memory import CHECKPOINTING, PRECISIONS, STRATEGIES, Memory, memory
from scratchllm.planning.shape import Shape, parse_count

TOKENS_PER_PARAM = 20
RULES = {
    "tokens": "20 tokens per parameter: the compute-optimal ratio of Chinchilla (Hoffmann et al. 2022); "
    "nanochat's own fits give ~10.5",
    "batch": "DeepSeek LLM (2024) fit: B_opt = 0.292 · C^0.3271 tokens for C = 6N·D-style training FLOPs, "
    "rounded to micro-batch × devices × accumulation",
    "lr": "DeepSeek LLM (2024) fit: η_opt = 0.3118 · C^−0.125",
    "schedule": "linear warmup for 1% of the steps (at least 100, at most Llama 2's 2000), cosine decay to 10% "
    "of the peak (Chinchilla, Llama): scheduler=cosine",
    "micro": "the largest power of two (at most 16 sequences) that fits the cheapest configuration",
    "choice": "cheapest first: least recomputation (none < selective ≈ +1/9 < full ≈ +1/3 of the step), then "
    "least communication (DDP < FSDP hybrid shard < FSDP full shard)",
    "time": "tokens/s = devices × peak × MFU ÷ training FLOPs per token (6N + 12·L·h·s, param_report); "
    "recomputation is inside the stated MFU",
}
# cheapest first: recomputation dominates communication at these sizes
ORDER = [(ckpt, strat) for ckpt in CHECKPOINTING for strat in STRATEGIES]


@dataclass
class Plan:
    shape: Shape
    accelerator: Accelerator
    devices: int
    precision: str
    tokens: int
    global_batch_seqs: int
    micro_batch: int
    accumulation: int
    steps: int
    lr: float
    warmup_steps: int
    chosen: Memory | None
    table: list[Memory] = field(default_factory=list)  # every strategy × checkpointing at micro-batch 1

    @property
    def nodes(self) -> int:
        return math.ceil(self.devices / self.accelerator.per_node)

    @property
    def per_node(self) -> int:
        return min(self.devices, self.accelerator.per_node)

    @property
    def params(self) -> int:
        return param_report(self.shape.config).total

    @property
    def flops_per_token(self) -> int:
        return flops_per_token(self.shape.config)

    @property
    def tokens_per_s(self) -> float:
        acc = self.accelerator
        return self.devices * acc.peak_tflops * 1e12 * acc.mfu / self.flops_per_token

    @property
    def hours(self) -> float:
        return self.tokens / self.tokens_per_s / 3600

    def to_dict(self) -> dict[str, Any]:
        from scratchllm.planning.render import plan_dict

        return plan_dict(self)


def _fits(m: Memory, acc: Accelerator) -> bool:
    return m.total <= acc.usable_bytes


def make_plan(shape: Shape, acc: Accelerator, devices: int, *, tokens: object = "auto",
              precision: str = "bf16-mixed", max_micro: int = 16) -> Plan:
    cfg = shape.config
    if devices < 1:
        raise ConfigError(f"gpus={devices} must be at least 1")
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r} is not planned for; choose one of: {', '.join(PRECISIONS)}")
    if devices > acc.per_node and devices % acc.per_node:
        raise ConfigError(f"gpus={devices} is not a whole number of {acc.per_node}-device nodes; "
                          f"use gpus={devices // acc.per_node * acc.per_node or acc.per_node}")
    n = param_report(cfg).total
    n_tokens = TOKENS_PER_PARAM * n if str(tokens) == "auto" else parse_count(tokens, "tokens")
    compute = flops_per_token(cfg) * n_tokens
    seq = cfg.context_length
    batch_tokens = 0.292 * compute**0.3271
    lr = 0.3118 * compute**-0.125

    world, per_node = devices, min(devices, acc.per_node)
    # on one node, hybrid shard is full shard
    order = [(c, s) for c, s in ORDER if world > per_node or s != "fsdp-hybrid"]
    table = [memory(cfg, strategy=s, checkpointing=c, precision=precision, micro=1, world=world,
                    per_node=per_node) for c, s in order]
    chosen = None
    for ckpt, strat in order:
        if _fits(memory(cfg, strategy=strat, checkpointing=ckpt, precision=precision, micro=1, world=world,
                        per_node=per_node), acc):
            chosen = (ckpt, strat)
            break
    # the global batch in sequences, at least one per device
    want_seqs = max(world, round(batch_tokens / seq))
    micro = 1
    if chosen:
        limit = min(max_micro, max(1, want_seqs // world))
        while micro * 2 <= limit and _fits(memory(cfg, strategy=chosen[1], checkpointing=chosen[0],
                                                  precision=precision, micro=micro * 2, world=world,
                                                  per_node=per_node), acc):
            micro *= 2
    accumulation = max(1, round(want_seqs / (micro * world)))
    global_seqs = micro * world * accumulation
    steps = math.ceil(n_tokens / (global_seqs * seq))
    warmup = min(2000, max(100, steps // 100), max(1, steps // 2))
    chosen_mem = (memory(cfg, strategy=chosen[1], checkpointing=chosen[0], precision=precision, micro=micro,
                         world=world, per_node=per_node) if chosen else None)
    return Plan(shape, acc, devices, precision, n_tokens, global_seqs, micro, accumulation, steps, lr, warmup,
                chosen_mem, table)


def what_would_fit(plan: Plan) -> str:
    """For a plan that fits nowhere: the smallest change that would (more devices, or a shorter context)."""
    cfg, acc = plan.shape.config, plan.accelerator
    full = memory(cfg, strategy="fsdp-full", checkpointing="full", precision=plan.precision, micro=1,
                  world=plan.devices, per_node=plan.per_node)
    hints = []
    for more in (2, 4, 8, 16, 32, 64):
        world = plan.devices * more
        m = memory(cfg, strategy="fsdp-full", checkpointing="full", precision=plan.precision, micro=1,
                   world=world, per_node=min(world, acc.per_node))
        if _fits(m, acc):
            hints.append(f"gpus={world}")
            break
    ctx = cfg.context_length // 2
    while ctx >= 128:
        m = memory(cfg.replace(context_length=ctx), strategy="fsdp-full", checkpointing="full",
                   precision=plan.precision, micro=1, world=plan.devices, per_node=plan.per_node)
        if _fits(m, acc):
            hints.append(f"context={ctx}")
            break
        ctx //= 2
    need = full.total / 1e9
    return (f"needs {need:.1f} GB per device even with FSDP full shard and full checkpointing "
            f"({acc.usable_bytes / 1e9:.1f} GB usable on {acc.name}); try {' or '.join(hints) or 'a larger device'}")
