"""The one linear construction point: every linear made there, residual projections marked, ``convert`` swapping
linears by name, initialisation unchanged for a seed, and KV caches in the activations' dtype."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import scratchllm.model
from scratchllm.generation import generate
from scratchllm.model import GPT, ModelConfig, convert, is_plain_float_linear, is_residual_projection

MODEL_DIR = Path(scratchllm.model.__file__).parent


# ------------------------------------------------------------------ modules a converter would make (test doubles)
class Int8Linear(nn.Module):
    """Weight-only int8, one scale per output row: what a quantization converter puts in a linear's place."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        w = linear.weight.detach().float()
        scale = w.abs().amax(dim=1, keepdim=True).clamp(min=1e-8) / 127
        self.register_buffer("weight", torch.round(w / scale).to(torch.int8))
        self.register_buffer("scale", scale.to(linear.weight.dtype))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.weight.to(x.dtype) * self.scale.to(x.dtype), bias)


class LoRALike(nn.Module):
    """Base weight and bias kept under their own names, plus a low-rank B·A that starts at zero (B = 0)."""

    def __init__(self, linear: nn.Linear, rank: int = 2) -> None:
        super().__init__()
        self.weight, self.bias = linear.weight, linear.bias
        self.lora_A = nn.Parameter(torch.randn(rank, linear.in_features))
        self.lora_B = nn.Parameter(torch.zeros(linear.out_features, rank))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias) + x @ self.lora_A.T @ self.lora_B.T


class Wrapped(nn.Module):
    """peft's layout: the base linear kept whole as a submodule."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.base_layer = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base_layer(x)


def linear_names(n_layer: int) -> set[str]:
    parts = ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")
    return {f"blocks.{i}.{p}" for i in range(n_layer) for p in parts} | {"lm_head"}


# ------------------------------------------------------------------------------------ one construction point
def test_no_linear_is_built_outside_linear_py() -> None:
    offenders = [
        f"{path.name}:{n}"
        for path in sorted(MODEL_DIR.glob("*.py")) if path.name != "linear.py"
        for n, line in enumerate(path.read_text().splitlines(), 1) if re.search(r"\bLinear\(", line)
    ]
    assert not offenders, f"build linears with make_linear: {offenders}"


@pytest.mark.parametrize("mlp", ["gelu", "swiglu"])
@pytest.mark.parametrize("tie", [True, False])
def test_residual_markers_sit_on_exactly_the_output_projections(tiny, mlp: str, tie: bool) -> None:
    model = GPT(tiny(mlp=mlp, tie_embeddings=tie, n_layer=3))
    linears = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    assert set(linears) == linear_names(3)  # the names adapters and interop/hf.py target
    residual = {name for name, m in linears.items() if is_residual_projection(m)}
    assert residual == {f"blocks.{i}.{p}" for i in range(3) for p in ("attn.proj", "mlp.proj")}
    assert all(is_plain_float_linear(m) for m in linears.values())


# ------------------------------------------------------------------------------------------------ init
# Sum and sum of squares of every state_dict tensor for torch.manual_seed(1234), recorded with the code before the
# linear construction point existed (name-suffix init): the same std per matrix *and* the same order of draws.
FINGERPRINTS = {
    "gpt2": (dict(vocab_size=100, context_length=16, n_layer=3, n_head=4, n_embd=32), (231.4092951, 237.1043605)),
    "llama": (
        dict(vocab_size=100, context_length=16, n_layer=3, n_head=4, n_kv_head=2, n_embd=32, mlp="swiglu",
             norm="rmsnorm", position="rope", bias=False, tie_embeddings=False),
        (230.0901267, 251.1976410),
    ),
}


@pytest.mark.parametrize("variant", sorted(FINGERPRINTS))
def test_seeded_init_is_the_same_as_before(variant: str) -> None:
    kwargs, (total, squares) = FINGERPRINTS[variant]
    torch.manual_seed(1234)
    state = GPT(ModelConfig(**kwargs)).state_dict()
    got = (sum(float(t.double().sum()) for t in state.values()), sum(float(t.double().square().sum()) for t in state.values()))
    assert got == pytest.approx((total, squares), abs=1e-5)


def test_reset_parameters_follows_markers_not_names(tiny) -> None:
    """A marked linear under any name gets the residual std; renaming a projection does not change its init."""
    model = GPT(tiny(n_layer=8, n_embd=64, mlp_hidden=256, tie_embeddings=False))
    model.blocks[0].attn.renamed = model.blocks[0].attn.proj  # a second name for the same module
    del model.blocks[0].attn.proj
    model.reset_parameters()
    std = model.blocks[0].attn.renamed.weight.std().item()
    assert std == pytest.approx(0.02 / 4, rel=0.1)  # 0.02 / √(2·8)
    assert model.blocks[0].attn.qkv.weight.std().item() == pytest.approx(0.02, rel=0.1)


# ------------------------------------------------------------------------------------------------ convert
def test_convert_by_peft_style_names(tiny) -> None:
    model = GPT(tiny(n_layer=2))
    assert convert(model, Int8Linear, filter=["attn.proj"]) == ["blocks.0.attn.proj", "blocks.1.attn.proj"]
    assert convert(GPT(tiny(n_layer=2)), Int8Linear, filter="proj") == [
        "blocks.0.attn.proj", "blocks.0.mlp.proj", "blocks.1.attn.proj", "blocks.1.mlp.proj"
    ]
    assert convert(GPT(tiny(n_layer=2)), Int8Linear, filter=["lm_head", "blocks.1.mlp.fc"]) == [
        "blocks.1.mlp.fc", "lm_head"
    ]
    assert convert(GPT(tiny()), Int8Linear, filter=["roj"]) == []  # whole name parts only, as peft matches
    assert isinstance(model.blocks[1].attn.proj, Int8Linear) and type(model.blocks[1].attn.qkv) is nn.Linear


def test_convert_by_callable_and_fn_may_decline(tiny) -> None:
    model = GPT(tiny(n_layer=2, tie_embeddings=False))
    wide = convert(model, Int8Linear, filter=lambda name, m: m.out_features > 32)
    assert wide == ["blocks.0.attn.qkv", "blocks.0.mlp.fc", "blocks.1.attn.qkv", "blocks.1.mlp.fc", "lm_head"]
    assert convert(model, lambda linear: None) == []  # None keeps every linear
    assert convert(model, lambda linear: linear) == []


def test_a_wrapper_keeps_names_and_output_and_loads_the_base_checkpoint(tiny) -> None:
    torch.manual_seed(0)
    model = GPT(tiny(n_layer=2, init_std=0.2)).eval()
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    idx = torch.randint(0, 65, (2, 7))
    with torch.no_grad():
        before, _ = model(idx)
    names = convert(model, LoRALike, filter=["attn.qkv", "mlp.fc"])
    assert names == ["blocks.0.attn.qkv", "blocks.0.mlp.fc", "blocks.1.attn.qkv", "blocks.1.mlp.fc"]
    with torch.no_grad():
        after, _ = model(idx)
    torch.testing.assert_close(after, before, rtol=0, atol=0)  # B = 0: the adapter starts as the base model
    lora_keys = {f"{n}.lora_{ab}" for n in names for ab in "AB"}
    assert set(model.state_dict()) == set(base_state) | lora_keys
    result = model.load_state_dict(base_state, strict=False)
    assert set(result.missing_keys) == lora_keys and not result.unexpected_keys


def test_each_linear_is_offered_once(tiny) -> None:
    model = GPT(tiny(n_layer=2))
    offered = []

    def wrap(linear: nn.Linear) -> nn.Module:
        offered.append(linear)
        return Wrapped(linear)

    names = convert(model, wrap)
    assert set(names) == linear_names(2) and len(offered) == len(names)
    assert isinstance(model.blocks[0].attn.qkv.base_layer, nn.Linear)  # not wrapped twice


def test_plain_float_linear() -> None:
    assert is_plain_float_linear(nn.Linear(4, 3)) and is_plain_float_linear(nn.Linear(4, 3).to(torch.bfloat16))

    class Sub(nn.Linear):
        pass

    class SubclassWeight(torch.Tensor):  # how torchao swaps a linear's weight and keeps the nn.Linear
        pass

    int8 = nn.Linear(4, 3)
    int8.weight = nn.Parameter(torch.zeros(3, 4, dtype=torch.int8), requires_grad=False)
    quantized = nn.Linear(4, 3)
    quantized.weight = nn.Parameter(quantized.weight.detach().as_subclass(SubclassWeight))
    parametrized = nn.Linear(4, 3)
    nn.utils.parametrize.register_parametrization(parametrized, "weight", nn.Identity())
    for module in (Sub(4, 3), int8, quantized, parametrized, Int8Linear(nn.Linear(4, 3)), nn.Embedding(3, 4)):
        assert not is_plain_float_linear(module), module


# -------------------------------------------------------------------------------------- KV cache dtype
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_caches_follow_the_activations_not_a_converted_head(tiny, dtype: torch.dtype) -> None:
    model = GPT(tiny(tie_embeddings=False)).to(dtype).eval()
    convert(model, Int8Linear)  # lm_head too: its "weight" is now int8
    assert model.lm_head.weight.dtype == torch.int8
    caches = model.make_caches(1, max_len=8)
    assert all(c.k.dtype == c.v.dtype == dtype for c in caches)
    idx = torch.randint(0, 65, (1, 8))
    with torch.no_grad():
        full, _ = model(idx)
        steps = [model(idx[:, t : t + 1], caches=caches, start_pos=t)[0] for t in range(8)]
    tol = 1e-5 if dtype == torch.float32 else 0.05
    torch.testing.assert_close(torch.cat(steps, dim=1).float(), full.float(), rtol=tol, atol=tol)


def test_generation_with_int8_linears_cached_equals_uncached(tiny) -> None:
    torch.manual_seed(0)
    model = GPT(tiny(tie_embeddings=False, init_std=0.5)).eval()
    convert(model, Int8Linear)
    cached = generate(model, [1, 2, 3], 10, temperature=0)
    assert cached == generate(model, [1, 2, 3], 10, temperature=0, use_cache=False)
    assert len(cached) == 10 and model.lm_head.calls > 0
