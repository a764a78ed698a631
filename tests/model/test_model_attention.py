"""Attention: causality for every variant, the two implementations agree, and GQA groups heads correctly.

The reference checks here do not trust the model's own attention code: the GQA test rebuilds an equivalent MHA
model by hand, and ``reference_forward`` re-derives the whole forward pass from the weights with textbook math.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from scratchllm.model import GPT, ModelConfig

VARIANTS = list(
    itertools.product(("sdpa", "explicit"), ("learned", "rope"), (4, 2, 1), ("layernorm", "rmsnorm"), ("gelu", "swiglu"))
)


def _ids(combo: tuple) -> str:
    return "-".join(str(c) for c in combo)


@pytest.mark.parametrize("attention,position,n_kv_head,norm,mlp", VARIANTS, ids=[_ids(v) for v in VARIANTS])
def test_changing_a_later_token_never_changes_earlier_logits(tiny, attention, position, n_kv_head, norm, mlp) -> None:
    cfg = tiny(attention=attention, position=position, n_kv_head=n_kv_head, norm=norm, mlp=mlp)
    model = GPT(cfg).eval()
    T = cfg.context_length
    base = torch.randint(0, cfg.vocab_size, (1, T))
    # Row p of the batch is the base sequence with only token p changed.
    edited = base.repeat(T, 1)
    positions = torch.arange(T)
    edited[positions, positions] = (base[0] + 1 + torch.randint(0, cfg.vocab_size - 1, (T,))) % cfg.vocab_size
    assert (edited[positions, positions] != base[0]).all()
    with torch.no_grad():
        ref, _ = model(base)
        out, _ = model(edited)
    for p in range(T):
        # Everything before p is exactly untouched (masked weights are exact zeros) ...
        torch.testing.assert_close(out[p, :p], ref[0, :p], rtol=0, atol=1e-6)
        # ... and position p itself does see its own token, so the test is not vacuous.
        assert (out[p, p] - ref[0, p]).abs().max() > 1e-4


@pytest.mark.parametrize("position", ["learned", "rope"])
@pytest.mark.parametrize("n_kv_head", [4, 2, 1])
@pytest.mark.parametrize("mlp,norm,bias", [("gelu", "layernorm", True), ("swiglu", "rmsnorm", False)])
def test_sdpa_equals_explicit(tiny, position, n_kv_head, mlp, norm, bias) -> None:
    common = dict(position=position, n_kv_head=n_kv_head, mlp=mlp, norm=norm, bias=bias)
    sdpa = GPT(tiny(attention="sdpa", **common)).eval()
    explicit = GPT(tiny(attention="explicit", **common)).eval()
    explicit.load_state_dict(sdpa.state_dict())
    idx = torch.randint(0, 65, (3, 16))
    targets = torch.randint(0, 65, (3, 16))
    with torch.no_grad():
        a, loss_a = sdpa(idx, targets)
        b, loss_b = explicit(idx, targets)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    torch.testing.assert_close(loss_a, loss_b, rtol=0, atol=1e-5)


def test_sdpa_equals_explicit_gradients(tiny) -> None:
    sdpa = GPT(tiny(attention="sdpa", n_kv_head=2, position="rope"))
    explicit = GPT(tiny(attention="explicit", n_kv_head=2, position="rope"))
    explicit.load_state_dict(sdpa.state_dict())
    idx, targets = torch.randint(0, 65, (2, 16)), torch.randint(0, 65, (2, 16))
    sdpa(idx, targets)[1].backward()
    explicit(idx, targets)[1].backward()
    for (name, p), q in zip(sdpa.named_parameters(), explicit.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
def test_gqa_with_n_kv_head_equal_to_n_head_is_mha(tiny, attention) -> None:
    mha_cfg = tiny(attention=attention)  # n_kv_head=None → n_head
    gqa_cfg = tiny(attention=attention, n_kv_head=4)
    assert mha_cfg.n_kv_head == 4 and mha_cfg == gqa_cfg
    mha, gqa = GPT(mha_cfg).eval(), GPT(gqa_cfg).eval()
    assert {k: v.shape for k, v in mha.state_dict().items()} == {k: v.shape for k, v in gqa.state_dict().items()}
    assert mha.blocks[0].attn.qkv.weight.shape == (3 * 32, 32)
    gqa.load_state_dict(mha.state_dict())
    idx = torch.randint(0, 65, (2, 16))
    with torch.no_grad():
        assert torch.equal(mha(idx)[0], gqa(idx)[0])


def _expand_kv_rows(weight: torch.Tensor, n_head: int, n_kv_head: int, head_dim: int) -> torch.Tensor:
    """Fused GQA qkv rows [q | k | v] → MHA rows, each KV head copied for the contiguous group of query heads it
    serves (query head h reads KV head h // (n_head / n_kv_head))."""
    q, k, v = weight.split([n_head * head_dim, n_kv_head * head_dim, n_kv_head * head_dim], dim=0)
    group = n_head // n_kv_head

    def expand(t: torch.Tensor) -> torch.Tensor:
        heads = t.reshape(n_kv_head, head_dim, *t.shape[1:])
        return heads.repeat_interleave(group, dim=0).reshape(n_head * head_dim, *t.shape[1:])

    return torch.cat([q, expand(k), expand(v)], dim=0)


@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
@pytest.mark.parametrize("position", ["learned", "rope"])
@pytest.mark.parametrize("n_kv_head", [2, 1])
@pytest.mark.parametrize("bias", [True, False])
def test_gqa_equals_mha_with_repeated_kv_weights(tiny, attention, position, n_kv_head, bias) -> None:
    gqa = GPT(tiny(attention=attention, position=position, n_kv_head=n_kv_head, bias=bias)).eval()
    mha = GPT(tiny(attention=attention, position=position, n_kv_head=4, bias=bias)).eval()
    state = gqa.state_dict()
    for key in list(state):
        if key.endswith("attn.qkv.weight") or key.endswith("attn.qkv.bias"):
            state[key] = _expand_kv_rows(state[key], 4, n_kv_head, 8)
    mha.load_state_dict(state)
    idx = torch.randint(0, 65, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(gqa(idx)[0], mha(idx)[0], rtol=0, atol=1e-5)
    # A wrong grouping (KV heads tiled instead of interleaved) must give different logits, or the test is blind.
    if n_kv_head == 2:
        wrong = gqa.state_dict()
        for key in list(wrong):
            if key.endswith("attn.qkv.weight"):
                q, k, v = wrong[key].split([32, 16, 16], dim=0)
                wrong[key] = torch.cat([q, k.repeat(2, 1), v.repeat(2, 1)], dim=0)
            elif key.endswith("attn.qkv.bias"):
                q, k, v = wrong[key].split([32, 16, 16], dim=0)
                wrong[key] = torch.cat([q, k.repeat(2), v.repeat(2)], dim=0)
        mha.load_state_dict(wrong)
        with torch.no_grad():
            assert (gqa(idx)[0] - mha(idx)[0]).abs().max() > 1e-4


# ------------------------------------------------------------------------------ independent reference forward
def _norm(x: torch.Tensor, sd: dict, prefix: str, cfg: ModelConfig) -> torch.Tensor:
    w = sd[f"{prefix}.weight"]
    if cfg.norm == "rmsnorm":
        return w * x / torch.sqrt((x * x).mean(-1, keepdim=True) + cfg.norm_eps)
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    y = w * (x - mu) / torch.sqrt(var + cfg.norm_eps)
    return y + sd[f"{prefix}.bias"] if cfg.bias else y


def _linear(x: torch.Tensor, sd: dict, prefix: str) -> torch.Tensor:
    y = x @ sd[f"{prefix}.weight"].T
    return y + sd[f"{prefix}.bias"] if f"{prefix}.bias" in sd else y


def _rotate(x: torch.Tensor, pos: int, theta: float) -> torch.Tensor:
    """Rotate one head vector: pair (i, i + d/2) turns by pos · theta^(-2i/d), written with complex numbers."""
    d = x.shape[-1]
    freqs = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    z = torch.complex(x[..., : d // 2].double(), x[..., d // 2 :].double()) * torch.polar(
        torch.ones_like(freqs), pos * freqs
    )
    return torch.cat([z.real, z.imag], dim=-1).to(x.dtype)


def reference_forward(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    """Per-token, per-head loops: slow and obvious. Returns real-vocab logits (T, vocab) for one sequence."""
    cfg = model.config
    sd = {k: v.double() for k, v in model.state_dict().items()}
    cfg_hd, nh, nkv = cfg.head_dim, cfg.n_head, cfg.n_kv_head
    T = idx.shape[0]
    x = sd["tok_emb.weight"][idx]
    if cfg.position == "learned":
        x = x + sd["pos_emb.weight"][:T]
    for i in range(cfg.n_layer):
        p = f"blocks.{i}"
        h = _norm(x, sd, f"{p}.norm1", cfg)
        qkv = _linear(h, sd, f"{p}.attn.qkv")
        q = qkv[:, : nh * cfg_hd].reshape(T, nh, cfg_hd)
        k = qkv[:, nh * cfg_hd : (nh + nkv) * cfg_hd].reshape(T, nkv, cfg_hd)
        v = qkv[:, (nh + nkv) * cfg_hd :].reshape(T, nkv, cfg_hd)
        if cfg.position == "rope":
            q = torch.stack([_rotate(q[t], t, cfg.rope_theta) for t in range(T)])
            k = torch.stack([_rotate(k[t], t, cfg.rope_theta) for t in range(T)])
        out = torch.zeros(T, nh, cfg_hd, dtype=x.dtype)
        for head in range(nh):
            kv = head // (nh // nkv)
            for t in range(T):
                scores = torch.stack([q[t, head] @ k[s, kv] for s in range(t + 1)]) / math.sqrt(cfg_hd)
                out[t, head] = torch.softmax(scores, 0) @ v[: t + 1, kv]
        x = x + _linear(out.reshape(T, nh * cfg_hd), sd, f"{p}.attn.proj")
        h = _linear(_norm(x, sd, f"{p}.norm2", cfg), sd, f"{p}.mlp.fc")
        if cfg.mlp == "swiglu":
            gate, up = h[:, : cfg.mlp_hidden], h[:, cfg.mlp_hidden :]
            h = gate * torch.sigmoid(gate) * up
        else:
            h = 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h**3)))
        x = x + _linear(h, sd, f"{p}.mlp.proj")
    x = _norm(x, sd, "norm_f", cfg)
    head_w = sd["tok_emb.weight"] if cfg.tie_embeddings else sd["lm_head.weight"]
    return (x @ head_w.T)[:, : cfg.vocab_size]


@pytest.mark.parametrize(
    "variant",
    [
        dict(attention="explicit"),  # GPT-2
        dict(attention="sdpa", position="rope", norm="rmsnorm", mlp="swiglu", n_kv_head=2, bias=False,
             tie_embeddings=False),  # Llama-style
        dict(attention="explicit", position="rope", n_kv_head=1),  # MQA
    ],
    ids=["gpt2", "llama", "mqa"],
)
def test_forward_matches_textbook_reference(tiny, variant) -> None:
    model = GPT(tiny(context_length=8, **variant)).eval()
    # Give norms non-trivial weights so their parameters are exercised too.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    idx = torch.randint(0, 65, (1, 8))
    with torch.no_grad():
        logits, _ = model(idx)
    ref = reference_forward(model, idx[0])
    torch.testing.assert_close(logits[0].double(), ref, rtol=0, atol=1e-5)
