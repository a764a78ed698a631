"""What this machine offers the fast paths: its CPU's feature flags and a working C++ compiler.

Light on purpose (no torch, no Lightning): training's ``auto`` choices (training/auto.py) and the int8 decode kernel
(quantization/native.py) both ask, and a decoding process should not import the training stack to find out.
"""

from __future__ import annotations

import shutil
import subprocess
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of /proc/cpuinfo (empty where there is none: macOS, Windows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@lru_cache(maxsize=4)
def cxx_compiler(env_cxx: str | None = None) -> tuple[str | None, str]:
    """The C++ compiler Inductor would use (``$CXX``, else c++/g++/clang++ on PATH) if it runs, and why not."""
    candidates = [env_cxx] if env_cxx else ["c++", "g++", "clang++"]
    for name in candidates:
        path = shutil.which(name) if name else None
        if not path:
            continue
        try:
            ok = subprocess.run([path, "--version"], capture_output=True, timeout=20).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        if ok:
            return path, f"C++ compiler {path}"
        return None, f"the C++ compiler {path} does not run"
    looked = env_cxx if env_cxx else "c++, g++ or clang++"
    return None, f"no C++ compiler ({looked}) on PATH; torch.compile needs one (Debian: apt-get install g++)"
