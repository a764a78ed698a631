"""The decode shortcuts compute what the plain model computes, and leave nothing behind."""

from __future__ import annotations

from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from scratchllm.generation import decode_session, generate
from scratchllm.generation.fastpath import DecodeShortcuts, decode_shortcuts
from scratchllm.model import GPT, convert


def test_only_the_last_position_is_scored_and_it_is_unchanged(tiny_model: Callable[..., GPT]) -> None:
    model = tiny_model(init_std=0.02)
    idx = torch.randint(0, 65, (2, 9))
    with torch.no_grad():
        full, _ = model(idx)
        with decode_shortcuts(model):
            last, _ = model(idx)
        after, _ = model(idx)
    assert last.shape == (2, 1, 65)
    torch.testing.assert_close(last[:, 0], full[:, -1], atol=1e-5, rtol=1e-5)
    assert after.shape == full.shape  # the hook is gone


def test_nothing_outlives_the_block(tiny_model: Callable[..., GPT]) -> None:
    model = tiny_model()
    with decode_shortcuts(model):
        assert any("forward" in m.__dict__ for m in model.modules())
        assert len(model.lm_head._forward_pre_hooks) == 1
    assert not any("forward" in m.__dict__ for m in model.modules())
    assert len(model.lm_head._forward_pre_hooks) == 0
    with pytest.raises(RuntimeError):
        with decode_shortcuts(model):
            raise RuntimeError("boom")
    assert not any("forward" in m.__dict__ for m in model.modules())  # undone on errors too


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("bias", [True, False])
def test_one_row_linear_is_a_matvec_with_the_same_result(dtype: torch.dtype, bias: bool) -> None:
    layer = nn.Linear(96, 200, bias=bias).to(dtype)
    model = nn.Sequential(layer)
    one, many = torch.randn(1, 1, 96, dtype=dtype), torch.randn(2, 3, 96, dtype=dtype)
    reference = F.linear(one.double(), layer.weight.double(), None if layer.bias is None else layer.bias.double())
    with torch.no_grad(), decode_shortcuts(model):
        fast, batched = model(one), model(many)
    assert fast.shape == (1, 1, 200) and fast.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 2e-2  # bf16: one rounding of a float32-accumulated dot product
    torch.testing.assert_close(fast.double(), reference, atol=tol, rtol=tol)
    with torch.no_grad():
        torch.testing.assert_close(batched, F.linear(many, layer.weight, layer.bias))


def test_decode_steps_match_with_and_without_shortcuts(tiny_model: Callable[..., GPT]) -> None:
    model = tiny_model(init_std=0.02, n_kv_head=2, position="rope")
    prompt = torch.randint(0, 65, (1, 6))
    with torch.no_grad():
        plain, shortcut = model.make_caches(1), model.make_caches(1)
        a, _ = model(prompt, caches=plain)
        with decode_shortcuts(model):
            b, _ = model(prompt, caches=shortcut)
        torch.testing.assert_close(b[:, -1], a[:, -1], atol=1e-5, rtol=1e-5)
        for pos in range(6, 12):
            token = a[:, -1].argmax(-1, keepdim=True)
            a, _ = model(token, caches=plain, start_pos=pos)
            with decode_shortcuts(model):
                b, _ = model(token, caches=shortcut, start_pos=pos)
            torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)


def test_bf16_one_row_linear_uses_packed_weights_with_the_same_result(tiny_model: Callable[..., GPT]) -> None:
    """bf16 single-row linears go through oneDNN's packed layout; results match F.linear to bf16 precision, and
    the packed copies belong to the shortcuts object, not the model."""
    model = tiny_model().to(torch.bfloat16).eval()
    layer = model.blocks[0].mlp.fc
    x = torch.randn(1, 1, layer.in_features, dtype=torch.bfloat16)
    attributes_before = set(layer.__dict__)
    shortcuts = DecodeShortcuts(model)
    with torch.inference_mode(), shortcuts:
        fast = layer(x)
    reference = F.linear(x.double(), layer.weight.double(), layer.bias.double())
    torch.testing.assert_close(fast.double(), reference, atol=0.05, rtol=0.02)
    if shortcuts._pack_ok:  # oneDNN with bf16 (this machine): the packed copy was made and kept by the object
        assert layer in shortcuts._packed
    assert set(layer.__dict__) == attributes_before  # nothing left on the model


def test_bf16_decode_steps_match_with_and_without_shortcuts(tiny_model: Callable[..., GPT]) -> None:
    model = tiny_model().to(torch.bfloat16).eval()
    idx = torch.randint(0, 65, (1, 12))
    with torch.inference_mode():
        plain_caches, fast_caches = model.make_caches(1), model.make_caches(1)
        a, _ = model(idx[:, :8], caches=plain_caches)
        shortcuts = DecodeShortcuts(model)
        with shortcuts:
            b, _ = model(idx[:, :8], caches=fast_caches)
        torch.testing.assert_close(b[:, -1].float(), a[:, -1].float(), atol=0.05, rtol=0.05)
        for pos in range(8, 12):
            a, _ = model(idx[:, pos : pos + 1], caches=plain_caches, start_pos=pos)
            with shortcuts:
                b, _ = model(idx[:, pos : pos + 1], caches=fast_caches, start_pos=pos)
            torch.testing.assert_close(b.float(), a.float(), atol=0.05, rtol=0.05)


def test_decode_session_packs_once_for_many_generations(tiny_model: Callable[..., GPT]) -> None:
    """Inside ``decode_session`` every generation reuses the same packed copies; the tokens are those of
    generations run without it; nothing is left on the model afterwards."""
    model = tiny_model(init_std=0.1).to(torch.bfloat16).eval()
    prompt = [1, 2, 3, 4]
    alone = [generate(model, prompt, 6, temperature=0) for _ in range(2)]
    with decode_session(model) as session:
        first = generate(model, prompt, 6, temperature=0)
        packed = dict(session._packed)
        second = generate(model, prompt, 6, temperature=0)
        with decode_session(model) as inner:  # nested blocks share the outer session
            assert inner is session
            third = generate(model, prompt, 6, temperature=0)
        assert model.__dict__.get("_scratchllm_decode_session") is session  # the inner block did not end it
    assert first == second == third == alone[0] == alone[1]
    if session._pack_ok:
        assert packed and all(session_copy is packed[m] for m, session_copy in packed.items())
        assert set(packed) == {m for m in model.modules() if isinstance(m, nn.Linear)}
    assert not session._packed  # dropped when the block ended
    assert "_scratchllm_decode_session" not in model.__dict__


@pytest.mark.parametrize("how", ["in_place", "new_tensor"])
def test_decode_session_repacks_weights_that_changed(tiny_model: Callable[..., GPT], how: str) -> None:
    model = tiny_model(init_std=0.1).to(torch.bfloat16).eval()
    prompt = [5, 6, 7]
    layer = model.blocks[0].mlp.fc
    with decode_session(model) as session:
        generate(model, prompt, 3, temperature=0)
        stale = session._packed.get(layer)
        with torch.no_grad():
            if how == "in_place":
                layer.weight.mul_(-3.0)
            else:
                layer.weight = nn.Parameter(layer.weight.detach() * -3.0)
        inside = generate(model, prompt, 8, temperature=0)
        if session._pack_ok:
            assert session._packed[layer] is not stale  # remade from the changed weight
    assert inside == generate(model, prompt, 8, temperature=0)  # the same as without any packed copy kept


# ------------------------------------------------------------------------------- converted linears (model.linear)
class CountingLinear(nn.Linear):
    """A converter's own linear (a subclass with its own forward): the shortcuts must not replace that forward."""

    calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        CountingLinear.calls += 1
        return super().forward(x)


class CountingWeight(torch.Tensor):
    """A tensor-subclass weight inside a plain ``nn.Linear`` (how torchao quantizes): its F.linear must run."""

    linear_calls = 0

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func is not F.linear:
            return super().__torch_function__(func, types, args, kwargs or {})
        cls.linear_calls += 1
        with torch._C.DisableTorchFunctionSubclass():  # a plain tensor out, as a quantized kernel gives
            return func(*args, **(kwargs or {}))


def _counting_linear(linear: nn.Linear) -> nn.Linear:
    new = CountingLinear(linear.in_features, linear.out_features, bias=linear.bias is not None)
    new.load_state_dict(linear.state_dict())
    return new.to(linear.weight.dtype)


def _greedy_without_shortcuts(model: GPT, prompt: list[int], n: int) -> list[int]:
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            ids.append(int(model(torch.tensor([ids]))[0][0, -1].argmax()))
    return ids[len(prompt) :]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_converted_linears_keep_their_own_forward(tiny_model: Callable[..., GPT], dtype: torch.dtype) -> None:
    from tests.model.test_model_linear import Int8Linear

    model = tiny_model().to(dtype)
    assert convert(model, _counting_linear, filter=["mlp.fc"]) == ["blocks.0.mlp.fc", "blocks.1.mlp.fc"]
    assert convert(model, Int8Linear, filter=["lm_head"]) == ["lm_head"]
    qkv = model.blocks[1].attn.qkv
    qkv.weight = nn.Parameter(qkv.weight.detach().as_subclass(CountingWeight))
    converted = {model.blocks[0].mlp.fc, model.blocks[1].mlp.fc, model.lm_head, qkv}
    plain = {m for m in model.modules() if type(m) is nn.Linear} - converted
    assert len(plain) == 5  # 2 × attn.proj, 2 × mlp.proj, blocks.0.attn.qkv

    CountingLinear.calls = CountingWeight.linear_calls = 0
    with decode_session(model) as session:
        assert set(session.linears) == plain
        tokens = generate(model, [1, 2, 3], 8, temperature=0)
        assert not set(session._packed) & converted  # only plain float weights are packed
    assert CountingLinear.calls >= 2 * 8 and CountingWeight.linear_calls >= 8 and model.lm_head.calls >= 8
    if dtype == torch.float32:  # bf16: packed and unpacked products may round a near-tie differently
        assert tokens == _greedy_without_shortcuts(model, [1, 2, 3], 8)
