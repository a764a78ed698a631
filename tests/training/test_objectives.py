"""Objectives, optimizers and schedules as config pieces: the module knows no particular loss, the defaults live
in conf/ once."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from scratchllm.model import GPT, ModelConfig
from scratchllm.paths import config_dir
from scratchllm.training.module import GPTLitModule, build_part
from scratchllm.training.objectives import NextTokenLM
from scratchllm.training.optim import WarmupCosine, build_adamw

CONF = Path(config_dir())


def _yaml(group: str, option: str) -> dict:
    return OmegaConf.to_container(OmegaConf.load(CONF / group / f"{option}.yaml"))


def test_lm_objective_is_the_models_loss_weighted_by_labelled_tokens():
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=50, n_layer=1, n_head=2, n_embd=16, context_length=8))
    ids = torch.randint(0, 50, (2, 8))
    labels = torch.randint(0, 50, (2, 8))
    labels[0, :5] = -100  # a masked prompt
    out = NextTokenLM()(model, {"input_ids": ids, "labels": labels})
    _, reference = model(ids, labels)
    assert torch.equal(out.loss, reference) and int(out.weight) == 16 - 5


def test_optimizer_defaults_live_in_the_yaml_and_match_the_function():
    adamw = _yaml("optim", "adamw")
    assert adamw["_target_"].endswith("build_adamw") and adamw["_partial_"] is True
    signature = inspect.signature(build_adamw).parameters
    for key in ("weight_decay", "eps", "fused"):
        assert adamw[key] == signature[key].default, key
    assert tuple(adamw["betas"]) == tuple(signature["betas"].default)
    cosine = _yaml("scheduler", "cosine")
    assert cosine["_target_"].endswith("WarmupCosine") and cosine["min_lr_ratio"] == WarmupCosine.min_lr_ratio


def test_partials_build_what_the_module_uses():
    model = GPT(ModelConfig(vocab_size=50, n_layer=1, n_head=2, n_embd=16, context_length=8))
    optimizer = build_part("optim", {**_yaml("optim", "adamw"), "lr": 3e-4})(model)
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.param_groups[0]["lr"] == 3e-4
    schedule = build_part("scheduler", {**_yaml("scheduler", "cosine"), "total_steps": 10, "warmup_steps": 2})()
    assert schedule(0) == 0.5 and schedule(10) == pytest.approx(0.1)
    # a checkpoint from before the configs had targets still builds the same pieces
    legacy = build_part("optim", {"lr": 1e-3, "weight_decay": 0.0, "betas": [0.9, 0.95], "eps": 1e-8})(model)
    assert isinstance(legacy, torch.optim.AdamW) and legacy.param_groups[0]["weight_decay"] == 0.0
    assert isinstance(build_part("objective", None), NextTokenLM)


def test_adamw_is_fused_on_cpu_by_default_and_matches_foreach():
    """``fused=None`` picks torch's fused kernel on CPU (one pass over the state; optim.py has the figures) and
    ``fused=False`` the foreach one; both take the same step."""
    torch.manual_seed(0)
    models = [GPT(ModelConfig(vocab_size=50, n_layer=1, n_head=2, n_embd=16, context_length=8)) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    default, foreach = build_adamw(models[0], lr=1e-2), build_adamw(models[1], lr=1e-2, fused=False)
    assert default.defaults["fused"] is True and foreach.defaults["foreach"] is True and not foreach.defaults["fused"]
    before = [p.detach().clone() for p in models[0].parameters()]
    ids = torch.randint(0, 50, (2, 8))
    for model, optimizer in zip(models, (default, foreach)):  # one step from the same weights and gradients
        model(ids, ids)[1].backward()
        optimizer.step()
    for a, b, start in zip(models[0].parameters(), models[1].parameters(), before):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)  # lr is 1e-2: the kernels differ by rounding only
        assert (a - start).abs().max() > 1e-3  # and every parameter did move


class _CountingObjective(NextTokenLM):
    """A stand-in for a new objective: one class, a metric of its own."""

    name = "counting"
    reports_perplexity = False

    def __call__(self, model, batch):
        out = super().__call__(model, batch)
        out.metrics["label_tokens"] = out.weight.float()
        return out


def test_module_trains_any_objective_from_its_config():
    module = GPTLitModule(
        model=ModelConfig(vocab_size=50, n_layer=1, n_head=2, n_embd=16, context_length=8).to_dict(),
        optim=_yaml("optim", "adamw"), scheduler={**_yaml("scheduler", "cosine"), "total_steps": 5},
        objective={"_target_": f"{__name__}._CountingObjective"},
    )
    assert isinstance(module.objective, _CountingObjective)
    assert module.hparams.objective["_target_"].endswith("_CountingObjective")
