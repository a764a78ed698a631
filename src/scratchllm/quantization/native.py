"""scratchllm's own int8 decode kernel (``kernels/int8_matvec.cpp``), compiled on first use where the CPU runs it.

Why our own: torch 2.13's ``_weight_int8pack_mm`` converts every int8 weight to float32 before multiplying (four
instructions per 16 weights), and on the CPUs we measured that conversion, not the memory read, sets its speed: on
GPT-2's 50304×768 head it is no faster than the bf16 matrix twice its size (experiments/results/
quantize_decode_*.md). The kernel here rounds each activation row to 15-bit integers (against the row's largest
value) and multiplies with AVX-512 VNNI's ``vpdpwssd``: one sign-extension and one multiply-add per 32 weights. Its
header explains the arithmetic; ``tests/quantization/test_native_kernel.py`` holds it to the dequantise-then-matmul
reference.

When it is used: ``Int8Linear`` calls it for inputs of up to ``NATIVE_MAX_ROWS`` rows (decoding) on a CPU with
AVX-512 BW, VL and VNNI (Intel since Cascade Lake, AMD since Zen 4) and a working C++ compiler. The first use on a
machine builds it with torch's extension builder (ninja, ~10 s, one line on stderr) into torch's extension cache
(``~/.cache/torch_extensions``, or ``$TORCH_EXTENSIONS_DIR``); later processes load the built file. Anywhere else,
or with ``SCRATCHLLM_INT8_KERNEL=torch``, int8 layers use torch's kernel as before. ``status()`` says which and why.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import sysconfig
import threading
from pathlib import Path
from typing import Callable

import torch

from scratchllm.machine import cpu_flags, cxx_compiler

SOURCE = Path(__file__).parent / "kernels" / "int8_matvec.cpp"
# -fopenmp: ATen's parallel_for is an OpenMP loop written in its header, so without it the kernel runs on one
# thread. The library it links, libgomp.so.1, is the one torch already loaded (same name), i.e. torch's own pool.
CFLAGS = ["-O3", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512vnni", "-fopenmp"]
LDFLAGS = ["-fopenmp"]
CPU_FLAGS = ("avx512f", "avx512bw", "avx512vl", "avx512_vnni")
ENV = "SCRATCHLLM_INT8_KERNEL"  # "auto" (default) or "torch"
NATIVE_MAX_ROWS = 4  # more rows: the kernel's arithmetic grows with each, torch's paths take over


def _ninja_on_path() -> bool:
    """torch's builder runs ``ninja`` from PATH; the ``ninja`` wheel puts it beside this Python, which is not on
    PATH when the venv is not activated (``.venv/bin/python -m …``)."""
    if shutil.which("ninja"):
        return True
    scripts = sysconfig.get_path("scripts")
    if scripts and (Path(scripts) / "ninja").exists():
        os.environ["PATH"] = scripts + os.pathsep + os.environ.get("PATH", "")
        return True
    return False


def _why_not(flags: frozenset[str]) -> str | None:
    if os.environ.get(ENV, "auto") == "torch":
        return f"{ENV}=torch"
    missing = [f for f in CPU_FLAGS if f not in flags]
    if missing:
        return f"the CPU lacks {', '.join(missing)}"
    compiler, why = cxx_compiler(os.environ.get("CXX"))
    if compiler is None:
        return why.split(";")[0] + " to build it"
    if not _ninja_on_path():
        return "ninja is not installed (pip install ninja)"
    return None


def _name() -> str:
    """One build per source, flags, torch install and Python (the build embeds their paths and ABI)."""
    key = [SOURCE.read_bytes(), " ".join(CFLAGS + LDFLAGS).encode(), torch.__version__.encode(),
           torch.__file__.encode(), sys.version.encode()]
    return f"scratchllm_int8_{hashlib.sha1(b'|'.join(key)).hexdigest()[:12]}"


def _load() -> Callable[..., torch.Tensor]:
    from torch.utils.cpp_extension import get_default_build_root, load

    name = _name()
    folder = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()) / name
    built = folder / f"{name}.so"
    if built.exists():
        # built before (by this or an earlier process): load it as is. torch's load() would take its build lock and
        # run ninja in every process, and a process killed while holding that lock would stall every later one.
        try:
            torch.ops.load_library(str(built))
        except OSError:  # an incomplete file (a build killed while linking): build again
            built.unlink(missing_ok=True)
    if not built.exists():
        print("int8: building scratchllm's int8 decode kernel for this CPU (once per machine, ~10 s)",
              file=sys.stderr, flush=True)
        folder.mkdir(parents=True, exist_ok=True)
        load(name, [str(SOURCE)], extra_cflags=CFLAGS, extra_ldflags=LDFLAGS, build_directory=str(folder),
             is_python_module=False, verbose=False)

    @torch.library.register_fake("scratchllm_int8::matvec")  # output shapes without running it (torch.compile)
    def _shape(x: torch.Tensor, w: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return x.new_empty((*x.shape[:-1], w.shape[0]))

    return torch.ops.scratchllm_int8.matvec


_BUILD_LOCK = threading.Lock()  # two threads decoding first at once must not load (and register) it twice
_DECIDED: tuple[Callable[..., torch.Tensor] | None, str] | None = None  # what status() found, once a process


def _decide() -> tuple[Callable[..., torch.Tensor] | None, str]:
    why = _why_not(cpu_flags())
    if why is not None:
        return None, f"torch's _weight_int8pack_mm: {why}"
    try:
        return _load(), "scratchllm's AVX-512 VNNI kernel (quantization/kernels/int8_matvec.cpp)"
    except Exception as err:  # a compiler or linker that fails here must not stop decoding: torch's kernel works
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"int8: building the int8 decode kernel failed ({first}); using torch's kernel", file=sys.stderr)
        return None, f"torch's _weight_int8pack_mm: the build failed ({first})"


def status() -> tuple[Callable[..., torch.Tensor] | None, str]:
    """(the kernel, or None where int8 layers use torch's; the reason in words). Built at most once a process."""
    global _DECIDED
    if _DECIDED is None:
        with _BUILD_LOCK:
            if _DECIDED is None:  # another thread may have decided while this one waited
                _DECIDED = _decide()
    return _DECIDED


def int8_matvec() -> Callable[..., torch.Tensor] | None:
    """The kernel ``(x, qweight, scales, bias) → y`` if this machine runs it, else None (every int8 decode step
    asks: after the first, one global read)."""
    return (_DECIDED or status())[0]
