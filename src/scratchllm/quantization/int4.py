"""Weight-only 4-bit, group-wise: each run of ``group_size`` input columns of a row has its own scale (and offset).

One 4-bit code u ∈ [0, 15] per weight, decoded as w ≈ (u − 8) · scale + zero, the convention of torch's CPU int4
kernel (``zero`` is the value code 8 stands for):

- **symmetric**: scale = max|w| / 7 over the group, zero = 0 (codes 1..15 used; 0 is a spare −8);
- **asymmetric**: scale = (max − min) / 15, zero = min + 8·scale: all 16 codes span the group's own range, which
  fits a skewed group better at the price of one more number per group.

Why groups: one scale per row would let a single large weight stretch the step size of the whole row; with 4 bits
(16 levels) that costs too much, so each group of 32-256 weights gets its own. Scales and zeros are stored in
bfloat16: with group 64 that is 4 + 2·16/64 = 4.5 bits per weight (float32 would be 5).

Storage (``qweight``, what the file holds): two codes per byte, the even column in the low nibble. The kernel
(``torch.ops.aten._weight_int4pack_mm_for_cpu``) wants its own blocked layout made by
``_convert_weight_to_int4pack_for_cpu`` (rows a multiple of 16, group_size 32/64/128/256 dividing the columns); the
module makes it on first use and keeps it beside ``qweight``. Shapes or devices the kernel refuses compute with
``reference_int4_linear``: dequantise, then an ordinary linear (what the kernel is tested against).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from scratchllm.quantization.int8 import KERNEL_MAX_ROWS  # many rows (prefill): the reference is faster, as for int8

GROUP_SIZES = (32, 64, 128, 256)  # what torch's CPU kernel takes; our own code would take any divisor
SCALE_DTYPE = torch.bfloat16
_KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def quantize_int4(weight: torch.Tensor, group_size: int, symmetric: bool) -> tuple[torch.Tensor, ...]:
    """(out, in) float weight → (packed codes (out, in/2) uint8, scales (out, in/g), zeros (out, in/g))."""
    out_features, in_features = weight.shape
    w = weight.detach().float().reshape(out_features, in_features // group_size, group_size)
    if symmetric:
        scales = (w.abs().amax(-1) / 7.0).clamp(min=1e-10)
        zeros = torch.zeros_like(scales)
    else:
        lo, hi = w.amin(-1), w.amax(-1)
        scales = ((hi - lo) / 15.0).clamp(min=1e-10)
        zeros = lo + 8 * scales
    # Round the scale/zero to what is stored first, so the codes are chosen for the numbers decoding will use.
    scales, zeros = scales.to(SCALE_DTYPE).float(), zeros.to(SCALE_DTYPE).float()
    codes = torch.round((w - zeros[..., None]) / scales[..., None] + 8).clamp(0, 15).to(torch.uint8)
    return pack_nibbles(codes.reshape(out_features, in_features)), scales.to(SCALE_DTYPE), zeros.to(SCALE_DTYPE)


def pack_nibbles(codes: torch.Tensor) -> torch.Tensor:
    """(rows, cols) values 0..15 → (rows, cols/2) bytes, column 2j in the low nibble, 2j+1 in the high one."""
    return (codes[:, 0::2] | (codes[:, 1::2] << 4)).to(torch.uint8)


def unpack_nibbles(packed: torch.Tensor) -> torch.Tensor:
    """The inverse of ``pack_nibbles``: (…, cols/2) bytes → (…, cols) uint8 codes."""
    return torch.stack((packed & 0x0F, packed >> 4), dim=-1).flatten(-2)


PACK_ROWS = 1024


def _kernel_layout(qweight: torch.Tensor) -> torch.Tensor:
    """torch's CPU int4 layout (out, in/2 bytes) of packed codes, converted ``PACK_ROWS`` rows at a time into a
    buffer made first: the converter reads one int32 per code (8× the stored bytes), so the tied head of a 50k
    vocabulary converted at once briefly held ~190 MB, more than the whole int4 model. 1,024 rows (a multiple of the
    converter's row block, so the bytes are the same) need ~3 MB at width 768, a temporary the allocator reuses
    from one chunk and one layer to the next instead of keeping freed blocks beside the live ones."""
    rows, half = qweight.shape
    out = torch.empty((rows, half), dtype=torch.uint8, device=qweight.device)
    for start in range(0, rows, PACK_ROWS):
        codes = unpack_nibbles(qweight[start:start + PACK_ROWS]).to(torch.int32)
        out[start:start + codes.shape[0]] = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes, 1)
    return out


def dequantize_int4(packed: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Rows of codes (…, in/2) with their scales/zeros (…, in/g) → float weights (…, in)."""
    codes = unpack_nibbles(packed).float()
    groups = scales.shape[-1]
    w = codes.unflatten(-1, (groups, -1))
    w = (w - 8) * scales.float()[..., None] + zeros.float()[..., None]
    return w.flatten(-2).to(dtype)


def reference_int4_linear(x: torch.Tensor, packed: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
                          bias: torch.Tensor | None) -> torch.Tensor:
    return F.linear(x, dequantize_int4(packed, scales, zeros, x.dtype), None if bias is None else bias.to(x.dtype))


def kernel_fits(out_features: int, in_features: int, group_size: int) -> bool:
    """Whether torch's CPU int4 kernel takes this shape (checked, not discovered by catching its error)."""
    return (out_features % 16 == 0 and group_size in GROUP_SIZES and in_features % group_size == 0
            and hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu"))


class Int4Linear(nn.Module):
    """A linear layer holding 4-bit codes (``qweight``), per-group ``scales`` and ``zeros``."""

    def __init__(self, in_features: int, out_features: int, bias: bool, group_size: int, *,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        groups = in_features // group_size
        self.register_buffer("qweight", torch.empty(out_features, in_features // 2, dtype=torch.uint8, device=device))
        self.register_buffer("scales", torch.empty(out_features, groups, dtype=SCALE_DTYPE, device=device))
        self.register_buffer("zeros", torch.empty(out_features, groups, dtype=SCALE_DTYPE, device=device))
        self.bias = nn.Parameter(torch.empty(out_features, dtype=dtype, device=device), requires_grad=False) \
            if bias else None
        # torch's kernel layout of the codes, and the scale/zero table per activation dtype, each with the state
        # (address, in-place version) of what it was made from: remade only when that changed.
        self._kernel_codes: tuple[tuple[int, int], torch.Tensor] | None = None
        self._kernel_tables: dict[torch.dtype, tuple[tuple[tuple[int, int], ...], torch.Tensor]] = {}

    @classmethod
    def from_linear(cls, linear: nn.Linear, group_size: int, symmetric: bool) -> "Int4Linear":
        new = cls(linear.in_features, linear.out_features, linear.bias is not None, group_size,
                  device=linear.weight.device, dtype=linear.weight.dtype)
        packed, scales, zeros = quantize_int4(linear.weight, group_size, symmetric)
        new.qweight.copy_(packed)
        new.scales.copy_(scales)
        new.zeros.copy_(zeros)
        if linear.bias is not None:
            new.bias.data.copy_(linear.bias.detach())
        return new

    def _apply(self, fn, recurse=True):  # noqa: ANN001 - nn.Module's signature
        # .to(dtype) would cast the stored bf16 scales; they stay bf16 (the kernel copy is made in the input dtype).
        scales, zeros = self.scales, self.zeros
        out = super()._apply(fn, recurse)
        if self.scales.dtype != SCALE_DTYPE:
            self.scales, self.zeros = scales.to(self.scales.device), zeros.to(self.zeros.device)
        self._kernel_codes, self._kernel_tables = None, {}
        return out

    def _kernel_weights(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """torch's packed layout (made once per codes: the slow part) and its (groups, out, 2) scale/zero table in
        ``dtype`` (made once per scales, zeros and dtype: switching float32 / bf16 inputs only remakes the table)."""
        codes_state = (self.qweight.data_ptr(), self.qweight._version)
        if self._kernel_codes is None or self._kernel_codes[0] != codes_state:
            self._kernel_codes = (codes_state, _kernel_layout(self.qweight))
        table_state = ((self.scales.data_ptr(), self.scales._version), (self.zeros.data_ptr(), self.zeros._version))
        cached = self._kernel_tables.get(dtype)
        if cached is None or cached[0] != table_state:
            table = torch.stack((self.scales, self.zeros), dim=-1).transpose(0, 1).contiguous().to(dtype)
            self._kernel_tables[dtype] = cached = (table_state, table)
        return self._kernel_codes[1], cached[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type != "cpu" or x.dtype not in _KERNEL_DTYPES or x.numel() > KERNEL_MAX_ROWS * self.in_features
                or not kernel_fits(self.out_features, self.in_features, self.group_size)):
            return reference_int4_linear(x, self.qweight, self.scales, self.zeros, self.bias)
        packed, table = self._kernel_weights(x.dtype)
        flat = x.reshape(-1, self.in_features)
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(flat, packed, self.group_size, table)
        if self.bias is not None:
            y = y + self.bias.to(x.dtype)
        return y.view(*x.shape[:-1], self.out_features)

    def embed(self, ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Rows ``ids`` of the dequantised matrix (the token embedding of a tied head)."""
        return dequantize_int4(self.qweight[ids], self.scales[ids], self.zeros[ids], dtype)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"int4 group_size={self.group_size}")
