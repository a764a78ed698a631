"""``torch_int8_kernel()``: int8 layers decode with torch's ``_weight_int8pack_mm`` instead of our kernel, in this
process, for as long as the ``with`` block lasts: the same weights through both kernels, side by side in one run.

``SCRATCHLLM_INT8_KERNEL=torch`` (quantization/native.py) is the product's opt-out, but it is read once per process;
this swaps the function ``Int8Linear`` asks for the kernel (``scratchllm.quantization.int8.int8_matvec``) for one
that answers "none here", and puts it back.
"""

from __future__ import annotations

import contextlib
from typing import Iterator


@contextlib.contextmanager
def torch_int8_kernel() -> Iterator[None]:
    import scratchllm.quantization.int8 as int8

    saved, int8.int8_matvec = int8.int8_matvec, lambda: None
    try:
        yield
    finally:
        int8.int8_matvec = saved
