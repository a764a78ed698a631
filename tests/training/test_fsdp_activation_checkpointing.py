"""Activation checkpointing (``model.checkpointing``): same loss and gradients, less kept for backward, and the
planner's activation model equal to what autograd really keeps."""

from __future__ import annotations

import pytest
import torch

from scratchllm.errors import ConfigError
from scratchllm.model import GPT, ModelConfig
from scratchllm.planning import activations

SMALL = dict(vocab_size=97, context_length=32, n_layer=3, n_head=4, n_embd=64)
VARIANTS = [dict(), dict(norm="rmsnorm", mlp="swiglu", position="rope", n_kv_head=2, bias=False, dropout=0.1)]


def loss_and_grads(cfg: ModelConfig, idx: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
    model = GPT(cfg)
    model.load_state_dict(state)
    torch.manual_seed(7)  # dropout draws the same masks in every run (and checkpoint replays them)
    _, loss = model(idx, targets=idx.roll(-1, dims=1))
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("variant", VARIANTS, ids=["gpt2-like", "llama-like-dropout"])
@pytest.mark.parametrize("mode", ["full", "selective"])
def test_checkpointing_gives_the_same_loss_and_gradients(variant, mode):
    base = ModelConfig(**SMALL, **variant)
    state = GPT(base).state_dict()
    idx = torch.randint(0, 97, (4, 32))
    ref_loss, ref = loss_and_grads(base, idx, state)
    loss, grads = loss_and_grads(base.replace(checkpointing=mode), idx, state)
    assert torch.equal(loss, ref_loss) or abs(float(loss - ref_loss)) < 1e-6
    for name, g in grads.items():
        torch.testing.assert_close(g, ref[name], atol=1e-6, rtol=0, msg=name)


def kept_for_backward(model: GPT, idx: torch.Tensor) -> int:
    """Bytes of the activation tensors autograd keeps after the forward pass (parameters excluded, shared storage
    counted once; inside a checkpointed region only what the checkpoint itself keeps)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    kept: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            kept[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(idx, targets=idx)
    return sum(kept.values())


SHAPES = {
    "nano": dict(vocab_size=65, context_length=64, n_layer=4, n_head=4, n_embd=128),
    "micro-llama": dict(vocab_size=65, context_length=128, n_layer=6, n_head=6, n_embd=384, norm="rmsnorm",
                        mlp="swiglu", position="rope", n_kv_head=2, bias=False),
    "gpt2-124m-shape": dict(vocab_size=50257, context_length=128, n_layer=12, n_head=12, n_embd=768),
}


@pytest.mark.parametrize("shape", [pytest.param(s, marks=pytest.mark.slow) if "gpt2" in s else s for s in SHAPES])
@pytest.mark.parametrize("batch", [1, 4])
def test_activation_model_matches_what_autograd_keeps(shape, batch):
    measured = {}
    for mode in ("none", "selective", "full"):
        cfg = ModelConfig(**SHAPES[shape], checkpointing=mode)
        with torch.device("cpu"):
            model = GPT(cfg)
        idx = torch.randint(0, cfg.vocab_size, (batch, cfg.context_length))
        measured[mode] = kept_for_backward(model, idx)
        predicted = activations(cfg, batch, mode, 4, rebuilt=False)  # fp32 activations: 4 bytes
        assert predicted == pytest.approx(measured[mode], rel=0.03), mode
    assert measured["full"] < measured["selective"] < measured["none"]


def test_checkpointing_is_validated_and_not_part_of_the_shape():
    with pytest.raises(ConfigError, match="model.checkpointing='some' is not a known variant"):
        ModelConfig(**SMALL, checkpointing="some")
    assert ModelConfig(**SMALL, checkpointing="full") == ModelConfig(**SMALL)


def test_no_recomputation_without_gradients():
    cfg = ModelConfig(**SMALL, checkpointing="full")
    model = GPT(cfg).eval()
    idx = torch.randint(0, 97, (1, 8))
    with torch.no_grad():
        logits, _ = model(idx)
    caches = model.make_caches(1)
    with torch.no_grad():
        cached, _ = model(idx, caches=caches)
    torch.testing.assert_close(cached, logits)
