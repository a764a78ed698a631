"""``StepTimer``: wall time at the end of every training step, shared by the plain loop and the Lightning callback;
``per_call``: the best mean time of a call repeated in a loop (the decode benchmarks' kernel timings), and
``per_call_interleaved`` for several calls taking turns.

What is measured: a *cycle* runs from the end of one optimizer step to the end of the next, so it holds everything
a loop does per step: fetching the batch, moving it to the device, the hooks, forward, backward, clipping, the
optimizer and scheduler steps, logging. The first ``warmup`` steps are excluded (kernel selection, allocator
growth, compilation); the measured window is the ``steps`` cycles after them. The first step's duration (from the
start of training) is kept apart: with ``compile`` it holds the compilation, estimated as first step − a steady one.

On CUDA the clock syncs the device only at the two ends of the window (a sync per step would itself slow the GPU
pipeline); per-step times between the ends are then launch times and only the window's mean is meaningful.

Losses are kept as detached tensors and read after training, so recording them never forces a sync either.

The window's process CPU time is kept too (``cpu_s_per_step``): on a shared machine, where wall time includes
waiting for a core, CPU time per step still shows how much work each loop does (with one torch thread it is the
cleanest overhead measure; with more, idle OpenMP threads spinning inflate it). ``--profile`` attributes that CPU
time to functions (cProfile with a CPU-time clock, so other processes do not pollute it).
"""

from __future__ import annotations

import cProfile
import io
import pstats
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch


def per_call(fn: Callable[[], object], calls: int, repeats: int = 5) -> float:
    """Seconds per call: ``fn`` makes ``calls`` calls; run it once to warm up, then ``repeats`` times, and keep the
    best mean (other load only ever slows a pass down)."""
    return per_call_interleaved({"": fn}, calls, repeats)[""]


def per_call_interleaved(fns: Mapping[str, Callable[[], object]], calls: int, repeats: int = 5) -> dict[str, float]:
    """``per_call`` for several ways of doing one thing, side by side: each is warmed up once, then the ways take
    turns, ``repeats`` rounds, so a slow spell of the machine hits all of them alike; each keeps its best round."""
    for fn in fns.values():
        fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], (time.perf_counter() - start) / calls)
    return best


@dataclass
class StepTimer:
    warmup: int
    steps: int
    device: str = "cpu"
    profile_path: str | None = None  # cProfile the measured window, write the top functions here
    start: float | None = None
    ends: list[float] = field(default_factory=list)
    cpu_marks: dict[int, float] = field(default_factory=dict)  # step index (-1 = start) → process CPU time
    losses: list[Any] = field(default_factory=list)
    _profiler: cProfile.Profile | None = None

    def _now(self, sync: bool) -> float:
        if sync and self.device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    def begin(self) -> None:
        """Training starts (the first batch is about to be fetched)."""
        self.start = self._now(sync=True)
        self.cpu_marks[-1] = time.process_time()
        if self.warmup == 0:
            self._start_profile()

    def step_end(self, loss: torch.Tensor | None) -> None:
        index = len(self.ends)
        boundary = index in (self.warmup - 1, self.warmup + self.steps - 1) or index == 0
        if index == self.warmup + self.steps - 1:
            self._stop_profile()
        self.ends.append(self._now(sync=boundary))
        if boundary:
            self.cpu_marks[index] = time.process_time()
        self.losses.append(loss.detach() if loss is not None else None)
        if index == self.warmup - 1:
            self._start_profile()

    def _start_profile(self) -> None:
        if self.profile_path:
            self._profiler = cProfile.Profile(time.process_time)
            self._profiler.enable()

    def _stop_profile(self) -> None:
        if self._profiler is None:
            return
        self._profiler.disable()
        text = io.StringIO()
        stats = pstats.Stats(self._profiler, stream=text)
        stats.sort_stats("tottime").print_stats(30)
        stats.sort_stats("cumulative").print_stats(40)
        Path(self.profile_path).write_text(text.getvalue())
        self._profiler = None

    def summary(self) -> dict[str, Any]:
        """Times in seconds; ``window_s`` covers exactly ``steps`` cycles after the warm-up."""
        if self.start is None or len(self.ends) < self.warmup + self.steps:
            raise RuntimeError(f"training stopped after {len(self.ends)} of {self.warmup + self.steps} steps")
        w, n = self.warmup, self.steps
        marks = [self.start] + self.ends
        durations = [b - a for a, b in zip(marks, marks[1:])]
        window = self.ends[w + n - 1] - (self.ends[w - 1] if w > 0 else self.start)
        cpu = self.cpu_marks[w + n - 1] - self.cpu_marks[w - 1 if w > 0 else -1]
        measured = durations[w : w + n]
        losses = [float(x) if x is not None else float("nan") for x in self.losses]
        return {
            "first_step_s": durations[0],
            "warmup_s": sum(durations[:w]),
            "window_s": window,
            "step_s_mean": window / n,
            "step_s_median": statistics.median(measured),
            "step_s_min": min(measured),
            "step_s_max": max(measured),
            "cpu_s_per_step": cpu / n,
            "losses": losses,
        }
