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
   Only *plain float* linears are swapped (``model.linear.is_plain_float_linear``): a module a converter made
   (int8/int4 weights, a tensor-subclass weight, an adapter) keeps its own forward; a plain linear an adapter
   wraps is still plain and still takes the shortcut.
   In bfloat16, when oneDNN offers it, a one-row input goes one step further: the weight is re-laid out once per
   generation into oneDNN's blocked format (``_reorder_linear_weight``, ~90 ms for GPT-2 small) and multiplied
   with ``_linear_pointwise``, which streams that layout ~1.3× faster than ``addmv`` on this CPU (the 50304×768
   head: 2.3 → 1.8 ms). The packed copies live in the ``DecodeShortcuts`` object, i.e. for one generation; if
   oneDNN refuses bf16 on a CPU, the object falls back to ``addmv`` for the rest of the generation.

Both are undone when the step ends (the model object is the caller's: nothing outlives the step). A model
compiled for training decodes eagerly (``generate._inference``), so the shortcuts apply to it as well.

**Packing once for many generations.** Re-laying out GPT-2 small's weights costs ~0.1 s on 2 cores (0.09-0.17 s
measured): nothing next to 1024 tokens, ~5% of a 128-token answer, paid again for every prompt of an interactive
session and growing with the model.
``with decode_session(model):`` keeps one ``DecodeShortcuts`` (and so its packed copies) for every generation
inside the block; a packed copy is remade when its weight changed in between (another tensor, or an in-place
update). The copies cost memory (one more bf16 copy of every linear weight) and are dropped when the block ends.

**How close this gets to the memory limit** (gpt2-124m, bf16, 2 cores; experiments/results/generate_*.md and
matvec_stream_*.md): each packed product costs ~19 µs for the oneDNN call itself (timed on an 8-row matrix that
sits in cache) and then streams at ~24 GB/s, where one long read of a 2 GiB tensor reaches 27-31 GB/s. With
matrices of 1-5 MB the call is a tenth of the time, so the products alone, back to back, reach ~64% of the limit;
the rest of a step (norms, attention over the cache, Python between operations) costs another ~30% on top.
"""

from __future__ import annotations

import functools
import types
import weakref
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from scratchllm.model.linear import is_plain_float_linear


class DecodeShortcuts:
    """Use as ``with shortcuts:`` around each model call of one generation (module doc).

    The modules to patch are found once, when the object is made; entering and leaving then costs a few
    microseconds per step (walking ``model.modules()`` every step would cost more than the shortcuts save on a
    small model).
    """

    def __init__(self, model: nn.Module) -> None:
        head = getattr(model, "lm_head", None)
        self.head = head if isinstance(head, nn.Module) else None
        self.linears = [
            m for m in model.modules()
            if is_plain_float_linear(m) and m.weight.device.type == "cpu" and "forward" not in m.__dict__
        ]
        self._hook: torch.utils.hooks.RemovableHandle | None = None
        self._packed: dict[nn.Linear, torch.Tensor] = {}  # oneDNN-blocked bf16 weights, made on first use
        # The weight each copy was made from (weakly: nothing kept alive) and its state then. An address alone can be
        # reused once a tensor is freed; the tensor object cannot.
        self._packed_from: dict[nn.Linear, tuple[weakref.ref[torch.Tensor], tuple[int, int]]] = {}
        self._pack_ok = _PACKED_OPS

    def refresh(self) -> None:
        """Forget the packed copies of weights that changed since they were made (called once per generation)."""
        for module in list(self._packed):
            source, state = self._packed_from[module]
            if source() is not module.weight or state != _weight_state(module.weight):
                del self._packed[module]

    def release(self) -> None:
        """Drop every packed copy (their memory goes back at once)."""
        self._packed.clear()
        self._packed_from.clear()

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
                self._packed_from[module] = (weakref.ref(module.weight), _weight_state(module.weight))
            return torch.ops.mkldnn._linear_pointwise(x, packed, module.bias, "none", [], "")
        except RuntimeError:  # this CPU's oneDNN has no bf16 kernel: plain matrix-vector for the rest
            self._pack_ok = False
            self.release()
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


_SESSION_ATTR = "_scratchllm_decode_session"


def is_compiled(model: nn.Module) -> bool:
    """Whether calling ``model`` runs a ``torch.compile`` graph: compiled in place (``model.compile()``, what
    ``compile=true`` does) or wrapped (``torch.compile(model)``)."""
    return getattr(model, "_compiled_call_impl", None) is not None or hasattr(model, "_orig_mod")


@contextmanager
def decode_session(model: nn.Module) -> Iterator[DecodeShortcuts]:
    """Share one ``DecodeShortcuts`` (its packed bf16 weights) across every generation inside the block.

    ``with decode_session(model): generate(model, …); generate(model, …)`` packs the weights once instead of once
    per call (module doc). The object is parked on the model only while the block runs; nested blocks share the
    outer one.
    """
    active = model.__dict__.get(_SESSION_ATTR)
    if active is not None:
        yield active
        return
    shortcuts = DecodeShortcuts(model)
    model.__dict__[_SESSION_ATTR] = shortcuts  # not a parameter, buffer or submodule: bypass nn.Module's setattr
    try:
        yield shortcuts
    finally:
        model.__dict__.pop(_SESSION_ATTR, None)
        shortcuts.release()


def shortcuts_for(model: nn.Module) -> DecodeShortcuts:
    """The shortcuts for one generation: the enclosing ``decode_session``'s (refreshed), else a fresh object."""
    active = model.__dict__.get(_SESSION_ATTR)
    if active is None:
        return DecodeShortcuts(model)
    active.refresh()
    return active


_PACKED_OPS = (
    torch.backends.mkldnn.is_available()
    and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
    and hasattr(torch.ops.mkldnn, "_linear_pointwise")
)


def _weight_state(weight: torch.Tensor) -> tuple[int, int]:
    """Where the weight's data lives and how often it was written in place."""
    try:
        version = weight._version
    except RuntimeError:  # a tensor made under inference_mode keeps no version counter: only its address tells
        version = -1
    return weight.data_ptr(), version


def _last_position_only(head: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    x = args[0]
    return (x[:, -1:, :], *args[1:]) if x.dim() == 3 and x.shape[1] > 1 else args


def _matvec_linear(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    if x.numel() != x.shape[-1]:  # more than one row: the matrix-matrix kernel is the right one
        return F.linear(x, self.weight, self.bias)
    flat = x.reshape(-1)
    y = torch.addmv(self.bias, self.weight, flat) if self.bias is not None else torch.mv(self.weight, flat)
    return y.view(*x.shape[:-1], y.shape[-1])
