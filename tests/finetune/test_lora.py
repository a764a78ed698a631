"""Our LoRA against peft's (a test-only dependency): same base and adapter weights → same outputs and gradients."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from scratchllm.errors import CheckpointError, ConfigError
from scratchllm.finetune.lora import (ADAPTER_FILE, LoRAConfig, adapter_state, apply_lora, load_adapter, merge,
                                     save_adapter, unmerge)
from scratchllm.model import GPT, ModelConfig

peft = pytest.importorskip("peft")

SHAPE = dict(vocab_size=97, context_length=32, n_layer=2, n_head=4, n_embd=32, mlp_hidden=64)


def base_model(**overrides) -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig(**{**SHAPE, **overrides})).double().float()


def with_random_adapter(targets: list[str]) -> tuple[GPT, torch.nn.Module]:
    """Our LoRA model and peft's around an identical copy, with the same (non-zero) adapter weights."""
    ours = base_model()
    theirs = peft.get_peft_model(copy.deepcopy(ours), peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                                                      target_modules=targets))
    apply_lora(ours, LoRAConfig(rank=4, alpha=8, targets=targets))
    torch.manual_seed(1)
    state = {k: torch.randn_like(v) * 0.1 for k, v in adapter_state(ours).items()}
    ours.load_state_dict(state, strict=False)
    peft_state = {f"base_model.model.{k.replace('.weight', '.default.weight')}": v for k, v in state.items()}
    missing, unexpected = theirs.load_state_dict(peft_state, strict=False)
    assert not unexpected and not [k for k in missing if "lora_" in k]
    return ours, theirs


@pytest.mark.parametrize("targets", [["qkv", "attn.proj"], ["fc", "mlp.proj"]], ids=["attention", "mlp"])
def test_outputs_and_gradients_equal_peft(targets: list[str]) -> None:
    ours, theirs = with_random_adapter(targets)
    idx = torch.randint(0, 97, (3, 16))
    targets_ids = torch.randint(0, 97, (3, 16))
    logits_ours, loss_ours = ours(idx, targets_ids)
    logits_theirs, loss_theirs = theirs(idx, targets_ids)
    torch.testing.assert_close(logits_ours, logits_theirs, rtol=0, atol=1e-6)
    loss_ours.backward()
    loss_theirs.backward()
    grads_theirs = {n.replace("base_model.model.", "").replace(".default", ""): p.grad
                    for n, p in theirs.named_parameters() if p.requires_grad}
    grads_ours = {n: p.grad for n, p in ours.named_parameters() if p.requires_grad}
    assert sorted(grads_ours) == sorted(grads_theirs) and len(grads_ours) == 4 * len(targets)
    for name, grad in grads_ours.items():
        torch.testing.assert_close(grad, grads_theirs[name], rtol=0, atol=1e-6)


def test_fresh_adapter_changes_nothing_and_freezes_the_base() -> None:
    base = base_model()
    model = copy.deepcopy(base)
    wrapped = apply_lora(model, LoRAConfig(rank=4, targets=["qkv", "fc"]))
    assert wrapped == ["blocks.0.attn.qkv", "blocks.0.mlp.fc", "blocks.1.attn.qkv", "blocks.1.mlp.fc"]
    idx = torch.randint(0, 97, (2, 8))
    torch.testing.assert_close(model(idx)[0], base(idx)[0], rtol=0, atol=0)  # B starts at zero
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"{w}.lora_{ab}.weight" for w in wrapped for ab in "AB"}
    # a base checkpoint still loads into the converted model unchanged (the wrapper keeps weight/bias)
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and all("lora_" in k for k in missing)
    with pytest.raises(ConfigError, match="match no linear"):
        apply_lora(base_model(), LoRAConfig(targets=["q_proj"]))


def test_merge_equals_unmerged_and_unmerge_restores() -> None:
    ours, _ = with_random_adapter(["qkv", "attn.proj", "fc", "mlp.proj"])
    idx = torch.randint(0, 97, (2, 12))
    before = ours(idx)[0].detach()
    weight = ours.blocks[0].attn.qkv.weight.detach().clone()
    merge(ours)
    torch.testing.assert_close(ours(idx)[0], before, rtol=0, atol=1e-5)
    unmerge(ours)
    torch.testing.assert_close(ours.blocks[0].attn.qkv.weight, weight, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours(idx)[0], before, rtol=0, atol=1e-6)


def test_adapter_saved_alone_and_loaded_onto_its_base(tmp_path: Path) -> None:
    ours, _ = with_random_adapter(["qkv", "fc"])
    idx = torch.randint(0, 97, (2, 12))
    folder = save_adapter(ours, tmp_path / "adapter")
    base_bytes = sum(p.numel() * 4 for p in base_model().parameters())
    assert (folder / ADAPTER_FILE).stat().st_size < 0.2 * base_bytes
    fresh = base_model()
    load_adapter(fresh, folder)
    torch.testing.assert_close(fresh(idx)[0], ours(idx)[0], rtol=0, atol=0)
    with pytest.raises(CheckpointError, match="another shape: blocks.0.attn.qkv is 96x32 there, 192x64 here"):
        load_adapter(base_model(n_embd=64, mlp_hidden=128), folder)


@pytest.mark.parametrize("shape", [{}, dict(position="rope", norm="rmsnorm", mlp="swiglu", bias=False, n_kv_head=2)],
                         ids=["gpt2", "llama"])
def test_peft_loads_our_export_onto_our_hf_export(shape: dict, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    from scratchllm.finetune.peft_export import export_peft
    from scratchllm.interop.hf import save_hf

    ours = base_model(**shape)
    apply_lora(ours, LoRAConfig(rank=4, alpha=8, targets=["qkv", "attn.proj", "fc", "mlp.proj"]))
    torch.manual_seed(2)
    ours.load_state_dict({k: torch.randn_like(v) * 0.1 for k, v in adapter_state(ours).items()}, strict=False)
    save_hf(ours, tmp_path / "hf")
    export_peft(ours, tmp_path / "adapter")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    idx = torch.randint(0, 97, (2, 16))
    with torch.no_grad():
        base_logits = hf(idx).logits
    theirs = peft.PeftModel.from_pretrained(hf, tmp_path / "adapter").eval()
    with torch.no_grad():
        assert (theirs(idx).logits - base_logits).abs().max() > 1e-2  # the adapter is really applied
    with torch.no_grad():
        torch.testing.assert_close(theirs(idx).logits, ours.eval()(idx)[0][..., :97], rtol=0, atol=1e-5)
