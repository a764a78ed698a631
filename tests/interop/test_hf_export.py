"""save_hf: what we write, transformers must load into the same function; and load_hf must read it back exactly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open

from scratchllm.errors import ConfigError
from scratchllm.interop import load_hf, save_hf
from scratchllm.model import GPT, ModelConfig, param_report

SHAPE: dict[str, Any] = dict(vocab_size=200, context_length=32, n_layer=2, n_head=4, n_embd=64)
LLAMA: dict[str, Any] = dict(norm="rmsnorm", mlp="swiglu", position="rope", norm_eps=1e-6, mlp_hidden=96)
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "gpt2-tied": ("GPT2LMHeadModel", {}),
    "gpt2-untied-wide": ("GPT2LMHeadModel", {"tie_embeddings": False, "mlp_hidden": 96, "norm_eps": 1e-6}),
    "llama-gqa-untied": ("LlamaForCausalLM", {**LLAMA, "n_kv_head": 2, "tie_embeddings": False, "bias": False}),
    "llama-mha-tied-bias": ("LlamaForCausalLM", {**LLAMA, "tie_embeddings": True, "bias": True, "rope_theta": 5e5}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_save_hf_loads_in_transformers_and_round_trips(case: str, hf, ids: torch.Tensor, tmp_path: Path) -> None:
    architecture, overrides = CASES[case]
    cfg = ModelConfig(**{**SHAPE, **overrides})
    model = hf.perturb(GPT(cfg)).eval()  # random norms and biases too, not just ones and zeros
    save_hf(model, tmp_path)

    # the files: real vocabulary rows only, a tied head stored once
    hf_config = json.loads((tmp_path / "config.json").read_text())
    assert hf_config["architectures"] == [architecture] and hf_config["vocab_size"] == 200
    assert hf_config["tie_word_embeddings"] == cfg.tie_embeddings
    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as f:
        names = set(f.keys())
        embedding = "transformer.wte.weight" if architecture.startswith("GPT2") else "model.embed_tokens.weight"
        for name in (embedding, "lm_head.weight"):
            if name in names:
                assert f.get_slice(name).get_shape() == [200, 64], name
    assert ("lm_head.weight" in names) != cfg.tie_embeddings

    reference = hf.load(tmp_path)
    assert type(reference).__name__ == architecture
    assert sum(p.numel() for p in reference.parameters()) == param_report(cfg).total
    with torch.no_grad():
        ours, _ = model(ids)
    assert (ours - hf.logits(reference, ids)).abs().max().item() < 1e-4

    back = load_hf(tmp_path)
    assert back.config == cfg
    assert (back.lm_head.weight is back.tok_emb.weight) == cfg.tie_embeddings
    original, restored = model.state_dict(), back.state_dict()
    assert original.keys() == restored.keys()
    for name, tensor in original.items():
        if name in ("tok_emb.weight", "lm_head.weight"):  # padding rows: random before, zeros after
            assert torch.equal(restored[name][: cfg.vocab_size], tensor[: cfg.vocab_size]), name
        else:
            assert torch.equal(restored[name], tensor), name
    with torch.no_grad():
        assert torch.equal(back(ids)[0], ours)


@pytest.mark.parametrize(
    ("overrides", "fields"),
    [
        ({"norm": "rmsnorm"}, ["model.norm"]),  # rmsnorm + learned positions
        ({"mlp": "swiglu"}, ["model.mlp"]),
        ({"bias": False}, ["model.bias"]),  # GPT-2's layernorms and projections always have a bias
        ({"n_kv_head": 2}, ["model.n_kv_head"]),  # GPT-2 has no GQA
        ({"position": "rope"}, ["model.norm", "model.mlp"]),  # layernorm + gelu + rope
        ({"position": "rope", "norm": "rmsnorm"}, ["model.mlp"]),  # gelu + rope
        ({"position": "rope", "mlp": "swiglu"}, ["model.norm"]),  # layernorm + rope
    ],
)
def test_unexportable_combinations_name_the_field(overrides: dict[str, Any], fields: list[str], tmp_path: Path) -> None:
    model = GPT(ModelConfig(**{**SHAPE, **overrides}))
    with pytest.raises(ConfigError) as err:
        save_hf(model, tmp_path / "out")
    for field in fields:
        assert field in str(err.value)
    assert "needs" in str(err.value)
    assert not (tmp_path / "out").exists()
