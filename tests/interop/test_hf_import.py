"""load_hf: transformers checkpoints saved with ``save_pretrained`` must give our GPT the very same logits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from scratchllm.errors import CheckpointError, ConfigError
from scratchllm.interop import load_hf
from scratchllm.model import param_report

CASES: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    # name: (kind, HF config overrides, weights layout)
    "gpt2-tied": ("gpt2", {}, "safetensors"),
    "gpt2-untied-n_inner": ("gpt2", {"tie_word_embeddings": False, "n_inner": 96}, "safetensors"),
    "gpt2-bin": ("gpt2", {}, "bin"),
    "llama-mha-untied": ("llama", {}, "safetensors"),
    "llama-gqa-tied": ("llama", {"num_key_value_heads": 2, "tie_word_embeddings": True}, "safetensors"),
    "llama-gqa-bias": ("llama", {"num_key_value_heads": 2, "attention_bias": True, "mlp_bias": True}, "bin"),
    "llama-mqa-tied-bias-theta": (
        "llama",
        {"num_key_value_heads": 1, "tie_word_embeddings": True, "attention_bias": True, "mlp_bias": True,
         "rope_theta": 500000.0, "rms_norm_eps": 1e-5},
        "safetensors",
    ),
    "llama-sharded": ("llama", {"num_key_value_heads": 2}, "sharded"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_load_hf_matches_transformers(case: str, hf, ids: torch.Tensor, tmp_path: Path) -> None:
    kind, overrides, layout = CASES[case]
    reference = hf.build(kind, **overrides)
    reference.save_pretrained(tmp_path, max_shard_size="60KB" if layout == "sharded" else "5GB")
    if layout == "sharded":
        index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
        assert len(set(index["weight_map"].values())) > 1
    if layout == "bin":
        # transformers 5 writes only safetensors; many checkpoints on disk are still the pickled state dict that
        # transformers 4 wrote with safe_serialization=False, so write that file the way it did.
        (tmp_path / "model.safetensors").unlink()
        torch.save(reference.state_dict(), tmp_path / "pytorch_model.bin")

    model = load_hf(tmp_path)

    cfg = model.config
    assert not model.training
    assert cfg.vocab_size == 200 and cfg.padded_vocab_size == 256
    assert cfg.tie_embeddings == reference.config.tie_word_embeddings
    assert (model.lm_head.weight is model.tok_emb.weight) == cfg.tie_embeddings
    if kind == "llama":
        assert (cfg.norm, cfg.mlp, cfg.position) == ("rmsnorm", "swiglu", "rope")
        assert cfg.n_kv_head == reference.config.num_key_value_heads
        assert cfg.bias == reference.config.attention_bias
        assert cfg.norm_eps == reference.config.rms_norm_eps
        assert cfg.rope_theta == overrides.get("rope_theta", 10000.0)
    else:
        assert (cfg.norm, cfg.mlp, cfg.position, cfg.bias) == ("layernorm", "gelu", "learned", True)
        assert cfg.mlp_hidden == overrides.get("n_inner", 4 * 64)
    # padding rows are zeros, and the parameter count (over the real vocabulary) is what transformers reports
    assert torch.count_nonzero(model.tok_emb.weight[cfg.vocab_size :]) == 0
    assert torch.count_nonzero(model.lm_head.weight[cfg.vocab_size :]) == 0
    assert param_report(cfg).total == sum(p.numel() for p in reference.parameters())

    with torch.no_grad():
        ours, _ = model(ids)
    theirs = hf.logits(reference, ids)
    assert ours.shape == theirs.shape == (2, 32, 200)
    assert (ours - theirs).abs().max().item() < 1e-4


# ------------------------------------------------------------------------------------------------- errors
def _write_config(folder: Path, **config: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


LLAMA = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_attention_heads": 4}


def test_missing_folder_config_or_weights(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no Hugging Face checkpoint folder"):
        load_hf(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="config.json"):
        load_hf(tmp_path)
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_hf(_write_config(tmp_path / "no-weights", **LLAMA))


@pytest.mark.parametrize(
    "config",
    [
        {"model_type": "mistral", "architectures": ["MistralForCausalLM"]},
        {"model_type": "gpt2", "architectures": ["GPT2ForSequenceClassification"]},
        {"architectures": ["LlamaForCausalLM"]},
    ],
)
def test_unknown_architecture_names_what_is_supported(config: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="GPT2LMHeadModel.*LlamaForCausalLM"):
        load_hf(_write_config(tmp_path, **config))


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"attention_bias": True, "mlp_bias": False}, "mlp_bias"),
        ({"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "rope_scaling"),
        ({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0}}, "rope_type"),
        ({"head_dim": 32}, "head_dim"),
        ({"hidden_act": "gelu"}, "hidden_act"),
    ],
)
def test_llama_config_we_cannot_express(extra: dict[str, Any], field: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=field):
        load_hf(_write_config(tmp_path, **LLAMA, **extra))


def test_gpt2_exact_gelu_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="activation_function"):
        load_hf(_write_config(tmp_path, model_type="gpt2", activation_function="gelu"))


def test_weights_that_disagree_with_config(hf, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    hf.build("llama", num_key_value_heads=2).save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    missing = dict(tensors)
    del missing["model.layers.1.self_attn.k_proj.weight"]
    save_file(missing, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="model.layers.1.self_attn.k_proj.weight"):
        load_hf(tmp_path)

    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "num_key_value_heads": 4}))
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="k_proj.*shape"):
        load_hf(tmp_path)
