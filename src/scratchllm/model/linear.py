"""The one place the GPT builds its linear layers, and the one way to swap them on a built model.

Every matrix product of the model (the fused q/k/v projection, the attention output, the two MLP matrices and the
vocabulary head) is an ``nn.Linear`` made by ``make_linear``. What changes *how* such a product is computed (a
LoRA adapter: the frozen base plus a low-rank B·A; int8/int4 weight-only quantization: packed integer weights
and scales; a decode kernel) then needs no copy of the attention or MLP classes: it is a converter run over the
built model by ``convert`` (torchtitan's "model converters", torchao's ``quantize_``).

Why a plain ``nn.Linear`` and not a subclass: tools recognise linears by type (peft, torchao, bitsandbytes,
``torch.ao.quantization`` and our bf16 decode path check ``type(m) is nn.Linear``), so the module stays exactly
that, and what the model needs to know about it rides along as an attribute: ``is_residual_projection`` marks the
two projections that write into the residual stream (GPT-2's smaller init, see gpt.py).

Module names are interface: adapters target them the way peft does (``target_modules=["qkv", "proj"]`` matches
``blocks.0.attn.qkv`` by its last parts). They are ``blocks.{i}.attn.qkv``, ``blocks.{i}.attn.proj``,
``blocks.{i}.mlp.fc``, ``blocks.{i}.mlp.proj`` and ``lm_head``; interop/hf.py maps them to GPT-2's
c_attn/c_proj/c_fc/c_proj and Llama's q/k/v/o_proj and gate/up/down_proj.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn

RESIDUAL_ATTR = "is_residual_projection"
_FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
_PLAIN_TENSORS = (nn.Parameter, torch.Tensor)  # not a tensor subclass (torchao's quantized weights, bnb's Int8Params)


def make_linear(in_features: int, out_features: int, bias: bool, *, residual: bool = False) -> nn.Linear:
    """An ``nn.Linear`` of the GPT; ``residual=True`` marks a projection that adds into the residual stream."""
    linear = nn.Linear(in_features, out_features, bias=bias)
    setattr(linear, RESIDUAL_ATTR, residual)
    return linear


def is_residual_projection(module: nn.Module) -> bool:
    return bool(getattr(module, RESIDUAL_ATTR, False))


def is_plain_float_linear(module: nn.Module) -> bool:
    """Exactly an ``nn.Linear`` with ordinary float weights: what a kernel that replaces ``F.linear`` may assume.

    False for anything a converter made: a subclass or wrapper with its own forward, integer or packed weights, a
    tensor-subclass weight (torchao keeps the ``nn.Linear`` but swaps its weight), a parametrized linear."""
    if type(module) is not nn.Linear:
        return False
    weight, bias = module.weight, module.bias
    if type(weight) not in _PLAIN_TENSORS or weight.dtype not in _FLOAT_DTYPES:
        return False
    return bias is None or (type(bias) in _PLAIN_TENSORS and bias.dtype == weight.dtype)


Filter = Callable[[str, nn.Module], bool] | Iterable[str] | None


def convert(model: nn.Module, fn: Callable[[nn.Linear], nn.Module | None], *, filter: Filter = None) -> list[str]:
    """Replace linears of ``model`` in place by ``fn(linear)``; returns the names of those replaced.

    ``fn`` returns the new module, or None (or the linear itself) to keep it. ``filter`` picks which linears are
    offered: a callable ``(name, module) -> bool``, or names matched as peft matches ``target_modules`` (the full
    name, or its last dot-separated parts: ``"attn.proj"`` matches ``blocks.3.attn.proj``); None offers all.

    The new module takes the old one's place, so its name is unchanged. A wrapper decides its parameters' names:
    keeping the base's ``weight`` and ``bias`` as its own makes a base checkpoint load into it unchanged (peft's
    ``base_layer.weight`` does not). Each linear is offered once: the walk is over the modules as they were when
    the call began, so a wrapper's inner base linear is not offered again (a second ``convert`` call would).
    A tied ``lm_head`` offered to a converter that makes new weights stops sharing them with the embedding.
    """
    wanted = _as_predicate(filter)
    replaced = []
    for name, module in list(model.named_modules()):
        if not name or not isinstance(module, nn.Linear) or not wanted(name, module):
            continue
        new = fn(module)
        if new is None or new is module:
            continue
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name), attr, new)
        replaced.append(name)
    return replaced


def _as_predicate(filter: Filter) -> Callable[[str, nn.Module], bool]:
    if filter is None:
        return lambda name, module: True
    if callable(filter):
        return filter
    if isinstance(filter, str):  # one name, not its characters
        filter = [filter]
    targets = tuple(filter)
    return lambda name, module: any(name == t or name.endswith("." + t) for t in targets)
