"""How glibc's allocator treats the memory a training step frees: ``heap=auto|keep|default``.

Why it matters: with glibc's defaults, a freed block above the (dynamic) mmap threshold goes back to the kernel
with ``munmap``, and the top of the heap is trimmed as soon as 128 KiB of it are free. A training step frees
almost all of its activations at the end of the backward pass and allocates them again in the next forward, so
every step asks the kernel for the same pages again: each first touch is a page fault that zeroes 4 KiB. On a
2-core AMD EPYC (Zen 5) the compiled ``nano`` run took 5,358 minor faults per step (whole process, start-up
included) and 7.5 s of system time over 600 steps; with the heap kept, 378 and 1.2 s, and 1.17× the tokens/s
(``micro``: 1.16×, pairs 0.98-1.19; the same peak RSS; ``experiments/results/heap_2026-12-03.md``).

``keep`` sets two of glibc's knobs through ``mallopt``, in this process, before the model is built:

- ``M_MMAP_THRESHOLD`` = 32 MiB (glibc's largest): blocks up to it come from the heap, so they are reused, not
  mapped and faulted in again (larger ones — a 50k-vocabulary logits tensor — still use mmap);
- ``M_TRIM_THRESHOLD`` = 2 GiB: free memory at the top of the heap stays mapped for the next step.

The cost: the resident set stays at the step's high-water mark between steps instead of falling back (the peak
was the same in the runs above). ``default`` leaves glibc alone; ``auto`` is ``keep`` for CPU training on Linux
with glibc, unless the environment already sets the allocator (``MALLOC_*_`` variables, ``GLIBC_TUNABLES``, or a
preloaded allocator such as jemalloc or tcmalloc: ``MALLOC_MMAP_THRESHOLD_=65536``, which makes CPU peaks follow
the live tensors, is respected), and ``default`` on a GPU (the step's memory is the GPU's).
"""

from __future__ import annotations

import ctypes
import os
import platform
from dataclasses import dataclass

from scratchllm.errors import ConfigError

CHOICES = ("auto", "keep", "default")
M_TRIM_THRESHOLD = -1  # glibc's malloc.h parameter numbers
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20  # DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: mallopt refuses more
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int
_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")


@dataclass(frozen=True)
class HeapChoice:
    value: str  # "keep" or "default": what the process runs with
    reason: str

    def line(self) -> str:
        return f"heap={self.value}: {self.reason}"


def allocator_env(environ: dict[str, str]) -> dict[str, str]:
    """The variables of ``environ`` that set the allocator: glibc's ``MALLOC_*_`` thresholds, ``GLIBC_TUNABLES``
    with ``glibc.malloc`` keys, an ``LD_PRELOAD`` of another malloc (jemalloc, tcmalloc)."""
    found = {name: environ[name] for name in _ENV if name in environ}
    if "glibc.malloc" in environ.get("GLIBC_TUNABLES", ""):
        found["GLIBC_TUNABLES"] = environ["GLIBC_TUNABLES"]
    preload = environ.get("LD_PRELOAD", "")
    if "malloc" in preload or "jemalloc" in preload:
        found["LD_PRELOAD"] = preload
    return found


def without_allocator_env(environ: dict[str, str]) -> dict[str, str]:
    """``environ`` less ``allocator_env``'s variables: a child started with it runs on glibc's own thresholds
    (benchmarks and tests that compare ``heap=keep`` with ``default``)."""
    drop = allocator_env(environ)
    return {name: value for name, value in environ.items() if name not in drop}


def _environment_sets_allocator(environ: dict[str, str]) -> str | None:
    for name, value in allocator_env(environ).items():
        if name == "GLIBC_TUNABLES":
            return "GLIBC_TUNABLES sets glibc.malloc"
        if name == "LD_PRELOAD":
            return f"LD_PRELOAD={value} replaces the allocator"
        return f"{name} is set in the environment"
    return None


def choose_heap(setting: str | None, environ: dict[str, str] | None = None, libc: str | None = None,
                kind: str = "cpu") -> HeapChoice:
    """What ``heap=setting`` becomes in this process (``libc``: the C library's name, for tests; ``kind``: the
    device the run trains on, ``cpu`` or ``cuda``)."""
    setting = "auto" if setting is None else str(setting)
    if setting not in CHOICES:
        raise ConfigError(f"heap must be one of {', '.join(CHOICES)}; got {setting!r}")
    if setting == "default":
        return HeapChoice("default", "as configured (glibc's own thresholds)")
    libc = platform.libc_ver()[0] if libc is None else libc
    if libc != "glibc":
        why = "not glibc" if libc else "no glibc found"
        if setting == "keep":
            raise ConfigError(f"heap=keep tunes glibc's malloc, and this C library is {why}; use heap=auto")
        return HeapChoice("default", f"{why}: nothing to tune")
    if setting == "auto" and kind != "cpu":
        return HeapChoice("default", f"training on {kind}: the step's tensors are not in the CPU heap")
    if setting == "auto":
        env = _environment_sets_allocator(dict(os.environ) if environ is None else environ)
        if env:
            return HeapChoice("default", env + "; left as it is")
    return HeapChoice("keep", "freed tensors stay in the heap for the next step (mmap threshold 32 MiB, no trim "
                              "below 2 GiB): no page faults for memory the last step freed")


def apply_heap(setting: str | None, kind: str = "cpu") -> HeapChoice:
    """Choose and apply in this process; returns the choice (logged by the caller). Also called in every training
    process a strategy spawns (``FitResults.setup``): ``mallopt`` is per process."""
    choice = choose_heap(setting, kind=kind)
    if choice.value == "keep":
        libc = ctypes.CDLL(None)
        if libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1:
            return HeapChoice("default", "mallopt refused the mmap threshold; glibc's defaults stay")
        if libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) != 1:
            return HeapChoice("keep", "mmap threshold 32 MiB set, but mallopt refused the trim threshold: the top "
                                      "of the heap is still trimmed")
    return choice
