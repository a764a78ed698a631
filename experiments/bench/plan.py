"""What to run: one ``Job`` per (model, precision, compile, optimizer, loop, repeat), each in its own process.

Why one process per job: peak memory is a process's resident high-water mark, which only ever grows, so two
configurations in one process would hide each other's peak. A fresh process also starts every configuration
with the same allocator and compile caches (cold), and alternating the loops (plain, lightning, plain,
lightning, …) spreads slow drifts of a shared machine over all of them instead of charging one.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

PRECISIONS = ("32-true", "bf16-mixed", "bf16-true")
OPTIMIZERS = ("foreach", "fused")
COMPILE = ("off", "on")
# plain: our own loop, no Lightning. lightning: the Trainer as run.train builds it, with no logger, callbacks,
# checkpoints, progress bar or model summary (the loop itself). lightning-default: run.train's defaults
# (TensorBoard logger, checkpoint, throughput and progress-bar callbacks), i.e. what a user pays out of the box.
LOOPS = ("plain", "lightning", "lightning-default")
# Both compute the same function (model.attention is shape-neutral). On CPU under compile the explicit path is the
# faster one: TorchInductor fuses its mask + softmax around AMX bmm's, while SDPA's CPU flash kernel stays opaque.
ATTENTION = ("sdpa", "explicit")
DATA = ("shards", "random")


@dataclass(frozen=True)
class SizeDefaults:
    """Per-preset defaults: batch size, measured steps and warm-up steps (context = the preset's own)."""

    batch: int
    steps: int
    warmup: int


# Chosen so one configuration takes well under a minute on 2 CPU cores (compile time aside).
SIZE_DEFAULTS = {
    "nano": SizeDefaults(batch=32, steps=20, warmup=3),
    "micro": SizeDefaults(batch=12, steps=10, warmup=2),
    "gpt2-124m": SizeDefaults(batch=1, steps=3, warmup=2),
}
OTHER_DEFAULTS = SizeDefaults(batch=1, steps=3, warmup=2)


@dataclass(frozen=True)
class Job:
    """One measured training run. ``context=None`` keeps the preset's context length."""

    model: str
    batch: int
    steps: int
    warmup: int
    precision: str
    compile: bool
    optimizer: str  # fused | foreach
    loop: str  # one of LOOPS
    attention: str = "sdpa"  # model.attention: sdpa | explicit
    data: str = "shards"  # shards (the ShardDataModule stream) | random (uniform random ids)
    context: int | None = None
    device: str = "cpu"
    threads: int | None = None
    cache_dir: str = "data_cache"
    seed: int = 1337
    repeat: int = 0
    profile: bool = False

    @property
    def config_key(self) -> tuple:
        """Jobs with the same key train the same model the same way; only the loop (and repeat) differs."""
        return (self.model, self.context, self.batch, self.precision, self.compile, self.optimizer, self.attention)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Job":
        return cls(**json.loads(text))


def build_plan(
    models: list[str],
    precisions: list[str],
    compile_modes: list[str],
    optimizers: list[str],
    loops: list[str],
    *,
    attentions: tuple[str, ...] | list[str] = ("sdpa",),
    repeats: int = 1,
    batch: int | None = None,
    steps: int | None = None,
    warmup: int | None = None,
    context: int | None = None,
    **common: Any,
) -> list[Job]:
    """Every configuration of the grid; within one configuration the loops alternate, ``repeats`` times."""
    jobs = []
    for model in models:
        size = SIZE_DEFAULTS.get(model, OTHER_DEFAULTS)
        for precision in precisions:
            for compiled in compile_modes:
                for optimizer in optimizers:
                    for attention in attentions:
                        for repeat in range(repeats):
                            for loop in loops:
                                jobs.append(Job(
                                    model=model,
                                    batch=batch or size.batch,
                                    steps=steps or size.steps,
                                    warmup=size.warmup if warmup is None else warmup,
                                    context=context,
                                    precision=precision,
                                    compile=compiled == "on",
                                    optimizer=optimizer,
                                    loop=loop,
                                    attention=attention,
                                    repeat=repeat,
                                    **common,
                                ))
    return jobs
