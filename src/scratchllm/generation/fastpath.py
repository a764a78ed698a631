"""Two decode-time shortcuts, installed around each model call of the decode loop and removed right after it.

Decoding one token at batch 1 is a chain of matrix-*vector* products: every weight is read once and used for
one multiply-add, so the time per token is the time to stream the weights from memory. Two things waste it:

1. **Scoring positions nobody reads.** Sampling needs the logits of the newest position only. A prefill of T
   prompt tokens, or an uncached step over a T-token window, would still multiply all T hidden states by the
   vocabulary matrix (T × n_embd × 50k multiply-adds, ~40 GFLOP for GPT-2 at T=1024). A forward pre-hook on
   ``lm_head`` hands it the last position only. (A cached decode step has one position anyway.)
2. **A matrix-matrix kernel for a vector.** ``nn.Linear`` calls ``addmm``, a matrix-matrix product; on CPU in
   bfloat16 that goes through oneDNN, which for a single row streams the weights markedly slower than the
   dedicated matrix-vector kernel behind ``torch.mv`` (a bf16 dot product per row with float32 accumulation).
   So while a step runs, each CPU ``nn.Linear`` that receives exactly one row computes ``addmv(bias, W, x)``:
   the same function, one fused kernel, full memory bandwidth. Inputs with more rows (a prefill) take the
   normal path. In float32 both kernels run at the same speed; the swap is harmless there.
   In bfloat16, when oneDNN offers it, a one-row input goes one step further: the weight is re-laid out once per
   generation into oneDNN's blocked format (``_reorder_linear_weight``, ~90 ms for GPT-2 small) and multiplied
   with ``_linear_pointwise``, which streams that layout ~1.3× faster than ``addmv`` on this CPU (the 50304×768
   head: 2.3 → 1.8 ms). The packed copies live in the ``DecodeShortcuts`` object, i.e. for one generation; if
   oneDNN refuses bf16 on a CPU, the object falls back to ``addmv`` for the rest of the generation.

Both are undone when the step ends (the model object is the caller's: nothing outlives the step), and neither
is applied to a model compiled in place (a patched module would only make the compiler re-trace).
"""

from __future__ import annotations

import functools
import types
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn


class DecodeShortcuts:
    """Use as ``with shortcuts:`` around each model call of one generation (module doc).

    The modules to patch are found once, when the object is made; entering and leaving then costs a few
    microseconds per step (walking ``model.modules()`` every step would cost more than the shortcuts save on a
    small model).
    """

    def __init__(self, model: nn.Module) -> None:
        compiled = getattr(model, "_compiled_call_impl", None) is not None
        head = getattr(model, "lm_head", None)
        self.head = head if isinstance(head, nn.Module) and not compiled else None
        self.linears = [] if compiled else [
            m for m in model.modules()
            if type(m) is nn.Linear and m.weight.device.type == "cpu" and "forward" not in m.__dict__
        ]
        self._hook: torch.utils.hooks.RemovableHandle | None = None
        self._packed: dict[nn.Linear, torch.Tensor] = {}  # oneDNN-blocked bf16 weights, made on first use
        self._pack_ok = _PACKED_OPS

    def __enter__(self) -> "DecodeShortcuts":
        if self.head is not None:
            self._hook = self.head.register_forward_pre_hook(_last_position_only)
        for module in self.linears:
            # An instance attribute shadows nn.Linear.forward; set in __dict__ directly because it is neither a
            # parameter, a buffer nor a submodule (nn.Module.__setattr__ would check all three, every step).
            if self._pack_ok and module.weight.dtype == torch.bfloat16:
                module.__dict__["forward"] = functools.partial(self._packed_linear, module)
            else:
                module.__dict__["forward"] = types.MethodType(_matvec_linear, module)
        return self

    def _packed_linear(self, module: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        if x.numel() != x.shape[-1] or not self._pack_ok:
            return _matvec_linear(module, x)
        packed = self._packed.get(module)
        try:
            if packed is None:
                packed = self._packed[module] = torch.ops.mkldnn._reorder_linear_weight(module.weight.detach(), 1)
            return torch.ops.mkldnn._linear_pointwise(x, packed, module.bias, "none", [], "")
        except RuntimeError:  # this CPU's oneDNN has no bf16 kernel: plain matrix-vector for the rest
            self._pack_ok = False
            self._packed.clear()
            return _matvec_linear(module, x)

    def __exit__(self, *exc: object) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        for module in self.linears:
            module.__dict__.pop("forward", None)


@contextmanager
def decode_shortcuts(model: nn.Module) -> Iterator[None]:
    """The shortcuts for one block of code: ``with decode_shortcuts(model): model(idx)``."""
    with DecodeShortcuts(model):
        yield


_PACKED_OPS = (
    torch.backends.mkldnn.is_available()
    and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
    and hasattr(torch.ops.mkldnn, "_linear_pointwise")
)


def _last_position_only(head: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    x = args[0]
    return (x[:, -1:, :], *args[1:]) if x.dim() == 3 and x.shape[1] > 1 else args


def _matvec_linear(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    if x.numel() != x.shape[-1]:  # more than one row: the matrix-matrix kernel is the right one
        return F.linear(x, self.weight, self.bias)
    flat = x.reshape(-1)
    y = torch.addmv(self.bias, self.weight, flat) if self.bias is not None else torch.mv(self.weight, flat)
    return y.view(*x.shape[:-1], y.shape[-1])
