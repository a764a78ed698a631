"""Peak memory of one process: the kernel's resident-set high-water mark, and the CUDA allocator's peak.

``tracemalloc`` and ``resource``-style Python accounting miss torch's C++ allocations; the kernel's ``VmHWM``
(peak resident set size, in /proc/self/status) sees everything the process ever touched. It only grows, which is
why every configuration runs in a fresh process. On platforms without /proc, ``ru_maxrss`` is the same number.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path


def _status_kib(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])  # "VmHWM:   123456 kB"
    except (OSError, ValueError, IndexError):
        pass
    return None


def rss_mib() -> float:
    """Resident memory now."""
    kib = _status_kib("VmRSS")
    return kib / 1024 if kib is not None else peak_rss_mib()


def peak_rss_mib() -> float:
    """Resident high-water mark of this process since it started."""
    kib = _status_kib("VmHWM")
    if kib is None:
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        kib = maxrss // 1024 if sys.platform == "darwin" else maxrss  # bytes on macOS, KiB on Linux
    return kib / 1024
