"""The KV cache: incremental decoding gives exactly the logits of a full forward pass."""

from __future__ import annotations

import pytest
import torch

from scratchllm.model import GPT, KVCache


@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
@pytest.mark.parametrize("position", ["learned", "rope"])
@pytest.mark.parametrize("n_kv_head", [4, 2, 1], ids=["mha", "gqa", "mqa"])
def test_prefill_then_decode_equals_full_forward(tiny, attention, position, n_kv_head) -> None:
    model = GPT(tiny(attention=attention, position=position, n_kv_head=n_kv_head)).eval()
    idx = torch.randint(0, 65, (2, 16))
    with torch.no_grad():
        full, _ = model(idx)
        caches = model.make_caches(2)
        assert caches[0].k.shape == (2, n_kv_head, 16, 8)  # only the KV heads are cached
        prefill, _ = model(idx[:, :6], caches=caches, start_pos=0)
        torch.testing.assert_close(prefill, full[:, :6], rtol=0, atol=1e-5)
        for t in range(6, 16):
            step, _ = model(idx[:, t : t + 1], caches=caches, start_pos=t)
            torch.testing.assert_close(step[:, 0], full[:, t], rtol=0, atol=1e-5)


@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
@pytest.mark.parametrize("position", ["learned", "rope"])
@pytest.mark.parametrize("n_kv_head", [4, 2, 1], ids=["mha", "gqa", "mqa"])
def test_chunked_prefill_after_cached_tokens(tiny, attention, position, n_kv_head) -> None:
    """A chunk with start_pos > 0 and T > 1 needs a bottom-right-aligned causal mask over cache + chunk."""
    model = GPT(tiny(attention=attention, position=position, n_kv_head=n_kv_head)).eval()
    idx = torch.randint(0, 65, (2, 16))
    with torch.no_grad():
        full, _ = model(idx)
        caches = model.make_caches(2)
        pieces = [model(idx[:, a:b], caches=caches, start_pos=a)[0] for a, b in ((0, 5), (5, 9), (9, 10), (10, 16))]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=0, atol=1e-5)


def test_single_token_prompt_and_short_cache(tiny) -> None:
    model = GPT(tiny(position="rope")).eval()
    idx = torch.randint(0, 65, (1, 5))
    with torch.no_grad():
        full, _ = model(idx)
        caches = model.make_caches(1, max_len=5)
        assert caches[0].max_len == 5 and len(caches) == 2
        steps = [model(idx[:, t : t + 1], caches=caches, start_pos=t)[0] for t in range(5)]
        torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=0, atol=1e-5)
        with pytest.raises(ValueError, match="KV cache holds 5 positions"):
            model(idx[:, :1], caches=caches, start_pos=5)


def test_make_caches_follows_model_dtype(tiny) -> None:
    model = GPT(tiny()).to(torch.bfloat16)
    caches = model.make_caches(3, max_len=4)
    assert all(isinstance(c, KVCache) and c.k.dtype == torch.bfloat16 and c.v.shape == (3, 4, 4, 8) for c in caches)
    assert model.make_caches(1, dtype=torch.float32)[0].k.dtype == torch.float32

@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
@pytest.mark.parametrize("n_kv_head", [4, 2, 1], ids=["mha", "gqa", "mqa"])
def test_bf16_decode_step_attends_in_float32(tiny, attention, n_kv_head) -> None:
    """A one-query bf16 step on CPU upcasts q, k and v (decode_in_float32 says why: speed): what reaches the output
    projection is the float32 attention over the cached bf16 values, rounded once to bf16."""
    from scratchllm.model.attention import CausalSelfAttention

    attn = CausalSelfAttention(tiny(attention=attention, n_kv_head=n_kv_head)).eval().to(torch.bfloat16)
    seen = {}
    attn.proj.register_forward_pre_hook(lambda mod, args: seen.update(y=args[0]))
    x = torch.randn(2, 12, 32, dtype=torch.bfloat16)
    cache = KVCache(2, 16, n_kv_head, 8, dtype=torch.bfloat16)
    with torch.no_grad():
        attn(x[:, :11], cache=cache, start_pos=0)
        out = attn(x[:, 11:], cache=cache, start_pos=11)
        q = attn.qkv(x[:, 11:])[..., :32].view(2, 1, 4, 8).transpose(1, 2)
        k, v = cache.k[:, :, :12], cache.v[:, :, :12]
        run = attn._sdpa if attention == "sdpa" else attn._explicit
        expected = run(q.float(), k.float(), v.float()).to(torch.bfloat16).transpose(1, 2).reshape(2, 1, 32)
    assert out.dtype == torch.bfloat16
    assert torch.equal(seen["y"], expected)
