"""Weight-only int8, one scale per output channel (row): w ≈ q · s with q ∈ [-127, 127] and s = max|w_row| / 127.

Why per row: a row of W makes one output feature, so its scale multiplies that output once, after the integer dot
product (y_n = s_n · Σ_k q_nk x_k); the matrix stays int8 all the way through the kernel. Why 127 and not 128: a
symmetric range keeps 0 exactly representable and −w quantizes to −q.

Decoding (up to ``native.NATIVE_MAX_ROWS`` rows) on a CPU with AVX-512 VNNI uses our own kernel
(``native.py``, ``kernels/int8_matvec.cpp``): int8 weights times activations rounded to 15-bit integers per row,
built on first use. Everywhere else:

The kernel: ``torch.ops.aten._weight_int8pack_mm(x, q, s)`` (what gpt-fast uses on CPU) reads the int8 matrix and
converts in registers, so decoding streams 1 byte per weight instead of 2 (bf16) or 4 (fp32). It needs a 2-D input
of float32/bfloat16/float16 with the scales in that same dtype, on the CPU; anything else (another device, a dtype
it does not take) uses ``reference_int8_linear``, the straightforward dequantise-then-matmul it is tested against,
and so does an input of more than ``KERNEL_MAX_ROWS`` rows (prefill). Decode in bfloat16: torch 2.13's CPU kernel
is vectorised for bf16 activations; with float32 ones it takes a slow path (measured ~100x slower at one row).

Measured instead of it (experiments/bench_int8_kernels.py, one row, bf16, AVX2 CPU, one thread): torch.compile of
``F.linear(x, q.to(x.dtype)) * s`` (Inductor's woq-int8 pattern, which lowers to this same kernel when it matches;
here it did not, and its own loop ran ~10x slower, max-autotune too), a fused reduction written for Inductor
(3-5x slower), and the int8 matrix as two exact 4-bit planes through torch's int4 kernel (0.7x on cache-resident
matrices, equal on the 50304x768 head, equal for the whole decode, and packing raised peak memory): none faster.
``quantized.linear_dynamic`` (fbgemm) was ~2x on the head, but it quantizes the activations too (not weight-only).
Hence our own decode kernel (native.py), which keeps the activations at 15 bits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from scratchllm.quantization.native import NATIVE_MAX_ROWS, int8_matvec

_KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_NATIVE_DTYPES = (torch.float32, torch.bfloat16)
# Above this many input rows (a prompt's prefill, a perplexity batch) dequantise-then-matmul is faster: the kernel is
# made for decoding (a few rows) and its time grows with every row (measured, torch 2.13 CPU, 768x3072: at 256 rows
# ~2.8x the reference in bf16, ~28x in float32), while the one dequantised copy costs the same for any row count.
KERNEL_MAX_ROWS = 32
_ALIGN = 64  # bytes (a fresh torch CPU allocation is aligned to this)


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, in) float weight → (int8 values (out, in), float32 scales (out,))."""
    w = weight.detach().float()
    scales = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-10)  # an all-zero row gets a tiny scale, not 0/0
    q = torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scales


def dequantize_int8(q: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return (q.to(torch.float32) * scales.to(torch.float32)[:, None]).to(dtype)


def reference_int8_linear(x: torch.Tensor, q: torch.Tensor, scales: torch.Tensor,
                          bias: torch.Tensor | None) -> torch.Tensor:
    """What the kernel computes, spelled out: dequantise the whole matrix, then an ordinary linear."""
    return F.linear(x, dequantize_int8(q, scales, x.dtype), None if bias is None else bias.to(x.dtype))


class Int8Linear(nn.Module):
    """A linear layer holding int8 weights (``qweight``) and per-row ``scales``; computes in its input's dtype."""

    def __init__(self, in_features: int, out_features: int, bias: bool, *, device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("qweight", torch.empty(out_features, in_features, dtype=torch.int8, device=device))
        self.register_buffer("scales", torch.empty(out_features, dtype=dtype, device=device))
        self.bias = nn.Parameter(torch.empty(out_features, dtype=dtype, device=device), requires_grad=False) \
            if bias else None

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "Int8Linear":
        new = cls(linear.in_features, linear.out_features, linear.bias is not None, device=linear.weight.device,
                  dtype=linear.weight.dtype)
        q, scales = quantize_int8(linear.weight)
        new.qweight.copy_(q)
        new.scales.copy_(scales)
        if linear.bias is not None:
            new.bias.data.copy_(linear.bias.detach())
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type != "cpu" or x.dtype not in _KERNEL_DTYPES or x.numel() > KERNEL_MAX_ROWS * self.in_features
                or x.requires_grad):  # neither kernel has a backward: an adapter trained on int8 needs the reference
            return reference_int8_linear(x, self.qweight, self.scales, self.bias)
        if x.numel() <= NATIVE_MAX_ROWS * self.in_features and x.dtype in _NATIVE_DTYPES:
            # decoding: our VNNI kernel where this CPU runs it (quantization/native.py)
            matvec = int8_matvec()
            if matvec is not None:
                return matvec(x, self.qweight, self.scales, self.bias)
        if self.qweight.data_ptr() % _ALIGN:
            # The kernel's vector loads crash the process (segfault, torch 2.13) on an int8 matrix that is not
            # 64-byte aligned, which a tensor read from a file can be (safetensors packs them back to back).
            self.qweight = self.qweight.clone()
        flat = x.reshape(-1, self.in_features)  # the kernel takes a 2-D input only
        y = torch.ops.aten._weight_int8pack_mm(flat, self.qweight, self.scales.to(x.dtype))
        if self.bias is not None:
            y = y + self.bias.to(x.dtype)
        return y.view(*x.shape[:-1], self.out_features)

    def embed(self, ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Rows ``ids`` of the dequantised matrix: the token embedding when it shares this matrix (tied head)."""
        return (self.qweight[ids].to(dtype) * self.scales[ids].to(dtype).unsqueeze(-1))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, int8"
