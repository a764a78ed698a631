"""Structure of a built model: tied weights, initialisation statistics and attention maps."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from scratchllm.errors import InputError
from scratchllm.model import GPT


# ------------------------------------------------------------------------------------------- weight tying
def test_tied_head_shares_storage_with_embedding(tiny) -> None:
    model = GPT(tiny(tie_embeddings=True))
    assert model.lm_head.weight.data_ptr() == model.tok_emb.weight.data_ptr()
    assert model.lm_head.weight is model.tok_emb.weight
    assert model.tok_emb.weight.shape == (128, 32)  # padded rows
    # parameters() lists the shared matrix once.
    assert sum(p is model.tok_emb.weight for p in model.parameters()) == 1
    # Training one updates "both".
    with torch.no_grad():
        model.tok_emb.weight[3, 0] = 42.0
    assert model.lm_head.weight[3, 0] == 42.0


def test_tied_weights_survive_state_dict_round_trip(tiny) -> None:
    src, dst = GPT(tiny()), GPT(tiny())
    dst.load_state_dict(src.state_dict())
    assert dst.lm_head.weight.data_ptr() == dst.tok_emb.weight.data_ptr()
    assert torch.equal(dst.lm_head.weight, src.tok_emb.weight)


def test_untied_head_has_its_own_storage(tiny) -> None:
    model = GPT(tiny(tie_embeddings=False))
    assert model.lm_head.weight.data_ptr() != model.tok_emb.weight.data_ptr()
    assert not torch.equal(model.lm_head.weight, model.tok_emb.weight)
    assert model.lm_head.weight.shape == model.tok_emb.weight.shape == (128, 32)


def test_position_embedding_only_with_learned_positions(tiny) -> None:
    assert GPT(tiny(position="learned")).pos_emb.weight.shape == (16, 32)
    assert GPT(tiny(position="rope")).pos_emb is None


def test_module_shapes_follow_the_config(tiny) -> None:
    model = GPT(tiny(n_kv_head=2, mlp="swiglu", bias=False, norm="rmsnorm"))
    block = model.blocks[1]
    assert block.attn.qkv.weight.shape == ((4 + 2 + 2) * 8, 32) and block.attn.qkv.bias is None
    assert block.attn.proj.weight.shape == (32, 32)
    assert block.mlp.fc.weight.shape == (2 * 64, 32) and block.mlp.proj.weight.shape == (32, 64)
    assert not isinstance(block.norm1, nn.LayerNorm)
    assert len(model.blocks) == 2


# ------------------------------------------------------------------------------------------------ init
@pytest.mark.parametrize("tie", [True, False])
def test_init_statistics(tie: bool) -> None:
    """Residual projections: init_std / √(2·n_layer); other Linear and embeddings: init_std; biases 0; norms 1.

    Wide enough that each std estimate is good to ~1% (≥ 65k samples), so a 5% tolerance is robust."""
    from scratchllm.model import ModelConfig

    cfg = ModelConfig(vocab_size=1000, context_length=256, n_layer=8, n_head=4, n_embd=256, tie_embeddings=tie)
    model = GPT(cfg)
    residual_std = 0.02 / math.sqrt(2 * 8)  # 0.005, distinct from 0.02/√8 and 0.02/8
    seen_residual = 0
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            expected = residual_std if name.endswith(("attn.proj", "mlp.proj")) else 0.02
            seen_residual += expected == residual_std
            w = module.weight.detach()
            assert abs(w.std().item() - expected) < 0.05 * expected, name
            assert abs(w.mean().item()) < 0.05 * expected, name
            if module.bias is not None:
                assert torch.count_nonzero(module.bias) == 0, name
        elif isinstance(module, nn.Embedding):
            assert abs(module.weight.std().item() - 0.02) < 0.001, name
        elif isinstance(module, nn.LayerNorm):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0), name
    assert seen_residual == 16


def test_init_std_is_configurable() -> None:
    from scratchllm.model import ModelConfig

    cfg = ModelConfig(vocab_size=1000, context_length=32, n_layer=2, n_head=4, n_embd=256, init_std=0.05)
    model = GPT(cfg)
    assert abs(model.blocks[0].attn.qkv.weight.std().item() - 0.05) < 0.0025
    assert abs(model.blocks[0].mlp.proj.weight.std().item() - 0.025) < 0.00125


def test_rmsnorm_weights_start_at_one(tiny) -> None:
    model = GPT(tiny(norm="rmsnorm"))
    for name, p in model.named_parameters():
        if "norm" in name:
            assert torch.all(p == 1), name


def test_seed_makes_init_reproducible(tiny) -> None:
    torch.manual_seed(123)
    a = GPT(tiny())
    torch.manual_seed(123)
    b = GPT(tiny())
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name


# --------------------------------------------------------------------------------------- attention maps
@pytest.mark.parametrize("n_kv_head", [4, 1])
@pytest.mark.parametrize("position", ["learned", "rope"])
def test_attention_maps_are_causal_distributions(tiny, n_kv_head: int, position: str) -> None:
    model = GPT(tiny(attention="explicit", n_kv_head=n_kv_head, position=position)).eval()
    maps = model.attention_maps(torch.randint(0, 65, (3, 10)))
    assert len(maps) == 2
    upper = torch.triu(torch.ones(10, 10, dtype=torch.bool), diagonal=1)
    for weights in maps:
        assert weights.shape == (3, 4, 10, 10)
        assert not weights.requires_grad
        torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4, 10), rtol=0, atol=1e-5)
        assert torch.all(weights[..., upper] == 0)
        assert torch.all(weights[..., ~upper] > 0)
        torch.testing.assert_close(weights[..., 0, 0], torch.ones(3, 4))  # the first token sees only itself
    # The model is left as it was: no maps kept after the call.
    assert all(not b.attn.keep_attention and b.attn.last_attention is None for b in model.blocks)


def test_first_layer_map_matches_manual_computation(tiny) -> None:
    model = GPT(tiny(attention="explicit")).eval()
    idx = torch.randint(0, 65, (1, 6))
    maps = model.attention_maps(idx)
    with torch.no_grad():
        x = model.tok_emb(idx) + model.pos_emb(torch.arange(6))
        q, k, _ = model.blocks[0].attn.qkv(model.blocks[0].norm1(x)).split(32, dim=-1)
        q = q.view(1, 6, 4, 8).transpose(1, 2)
        k = k.view(1, 6, 4, 8).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) / math.sqrt(8)
        scores = scores.masked_fill(torch.triu(torch.ones(6, 6, dtype=torch.bool), 1), float("-inf"))
        torch.testing.assert_close(maps[0], scores.softmax(-1), rtol=0, atol=1e-6)


def test_attention_maps_need_explicit_attention(tiny) -> None:
    with pytest.raises(InputError, match="attention=explicit"):
        GPT(tiny(attention="sdpa")).attention_maps(torch.randint(0, 65, (1, 4)))


def test_a_model_built_on_meta_loads_no_meta_kernels() -> None:
    """Building on the meta device (a quantized file's skeleton, the planner's 10B shapes) must not run an init:
    the first normal_ on a meta tensor imports torch's meta kernels, ~800 modules and ~70 MB resident, which was
    half of what loading gpt2-124m's int8 weights added to a process. Run in a fresh interpreter (the imports are
    once per process)."""
    import subprocess
    import sys

    code = ("import sys, torch\n"
            "from scratchllm.model import GPT, ModelConfig\n"
            "before = len(sys.modules)\n"
            "with torch.device('meta'):\n"
            "    m = GPT(ModelConfig(vocab_size=50257, context_length=1024, n_layer=2, n_head=2, n_embd=64))\n"
            "assert m.tok_emb.weight.is_meta and m.pos_emb.weight.is_meta\n"
            "print(len(sys.modules) - before)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.split()[-1]) < 20  # ~825 when the init ran on meta
