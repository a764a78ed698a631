"""How many CPU threads torch uses: one rule for every command (``threads=auto|N|null``).

Why it matters: torch's OpenMP threads spin-wait between parallel regions. On a machine where another process
keeps a core busy, a 2-thread run spends most of its time waiting for the thread the OS has not scheduled, and
its spinning takes the core the other process wanted: the default model trained at 2.1 steps/s beside one busy
core against 10.3 idle, and decoded at 67 tokens/s against 880 (experiments/results/threads_*.md).
``threads=auto`` (the default) counts the cores that are free *now* (this process's cores minus those other
processes kept busy over a short sample of ``/proc/stat``) and uses that many threads: 6.3 steps/s and 800
tokens/s beside the busy core, and no cost on an idle machine.

A passive OpenMP wait policy (``OMP_WAIT_POLICY=PASSIVE``) was measured too and is not set: idle, it cost 20% of
training speed and 3.3× of decode speed (every parallel region then pays a thread wake-up), and beside a busy core
it gave nothing ``auto`` does not. Set it yourself if the machine's load changes during long runs.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from scratchllm.errors import ConfigError

_SAMPLE_SECONDS = 0.2


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, which containers and ``taskset`` narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies over all CPUs from /proc/stat, or None where there is no /proc."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_cores(seconds: float = _SAMPLE_SECONDS) -> float:
    """How many cores other processes keep busy, sampled over ``seconds`` (0 where it cannot be measured).
    This process sleeps meanwhile, so all the busy time is someone else's."""
    before = _cpu_times()
    time.sleep(seconds)
    after = _cpu_times()
    if before is None or after is None or after[1] <= before[1]:
        return 0.0
    share = (after[0] - before[0]) / (after[1] - before[1])
    return share * (os.cpu_count() or 1)


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    reason: str


def check_threads(threads: object) -> None:
    """Refuse anything but ``auto``, a positive integer or ``None`` (one line naming the choices)."""
    if threads is None or threads == "auto":
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads must be auto, a positive integer, or null (torch's default); got {threads!r}")


def choose_threads(threads: int | str | None) -> ThreadChoice:
    """``auto`` → the free cores (at least 1); an integer → that many; ``null`` → torch's own default."""
    check_threads(threads)
    if threads is None:
        return ThreadChoice(0, "torch's default")
    if threads == "auto":
        cores = available_cores()
        busy = busy_cores()
        free = max(1, min(cores, round(cores - busy)))
        why = f"{cores} cores" + (f", ~{busy:.1f} busy with other processes" if busy >= 0.5 else ", idle")
        return ThreadChoice(free, why)
    return ThreadChoice(int(threads), f"threads={threads}")


def apply_threads(threads: int | str | None) -> ThreadChoice:
    """Choose and set torch's intra-op thread count; returns the choice (``threads`` 0 = left to torch)."""
    import torch

    choice = choose_threads(threads)
    if choice.threads:
        torch.set_num_threads(choice.threads)
    return choice
