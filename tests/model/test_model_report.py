"""Parameter counts and FLOPs from the config alone, checked against real (and meta-device) modules."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time

import pytest
import torch

from scratchllm.model import GPT, ModelConfig, flops_per_token, load_preset, param_report, preset_names
from scratchllm.paths import config_dir

COMBOS = list(
    itertools.product(
        ("learned", "rope"), (4, 2, 1), ("layernorm", "rmsnorm"), ("gelu", "swiglu"), (True, False), (True, False)
    )
)


@pytest.mark.parametrize(
    "position,n_kv_head,norm,mlp,bias,tie", COMBOS, ids=["-".join(map(str, c)) for c in COMBOS]
)
def test_allocated_equals_real_parameter_count(position, n_kv_head, norm, mlp, bias, tie) -> None:
    cfg = ModelConfig(vocab_size=100, context_length=8, n_layer=2, n_head=4, n_embd=32, position=position,
                      n_kv_head=n_kv_head, norm=norm, mlp=mlp, bias=bias, tie_embeddings=tie)
    with torch.device("meta"):
        model = GPT(cfg)
    report = param_report(cfg)
    assert report.allocated == sum(p.numel() for p in model.parameters())
    assert report.padding == (128 - 100) * 32 * (1 if tie else 2)
    assert report.total == report.allocated - report.padding
    assert report.non_embedding == report.total - report.embedding - report.position


def test_report_on_a_real_cpu_model() -> None:
    cfg = load_preset("nano")
    assert param_report(cfg).allocated == sum(p.numel() for p in GPT(cfg).parameters())


def test_gpt2_124m_total_matches_transformers() -> None:
    report = param_report(load_preset("gpt2-124m"))
    assert report.total == 124_439_808
    assert report.non_embedding == 124_439_808 - 50257 * 768 - 1024 * 768
    assert report.head == 0


@pytest.mark.parametrize("name,target", [("llama-1b", 1e9), ("llama-10b", 1e10)])
def test_llama_presets_size_and_meta_build(name: str, target: float) -> None:
    cfg = load_preset(name)
    report = param_report(cfg)
    assert abs(report.total - target) / target < 0.02
    start = time.perf_counter()
    with torch.device("meta"):
        model = GPT(cfg)
    assert time.perf_counter() - start < 10
    params = list(model.parameters())
    assert all(p.is_meta for p in params)
    assert sum(p.numel() for p in params) == report.allocated
    assert cfg.position == "rope" and cfg.mlp == "swiglu" and cfg.n_kv_head < cfg.n_head


def test_every_preset_file_loads() -> None:
    files = sorted(p.stem for p in (config_dir() / "model").glob("*.yaml"))
    assert {"nano", "micro", "gpt2-124m", "llama-1b", "llama-10b"} <= set(files)
    assert sorted(preset_names()) == files
    totals = [param_report(load_preset(n)).total for n in preset_names()]
    assert totals == sorted(totals)  # smallest first
    for name in files:
        cfg = load_preset(name)
        assert isinstance(cfg, ModelConfig) and cfg.name == name


def test_load_preset_overrides_and_unknown_names() -> None:
    from scratchllm.errors import ConfigError

    cfg = load_preset("nano", norm="rmsnorm", n_kv_head=2)
    assert cfg.norm == "rmsnorm" and cfg.n_kv_head == 2 and cfg.n_layer == 4
    with pytest.raises(ConfigError, match="unknown model preset 'nope'; choose one of: .*nano"):
        load_preset("nope")
    with pytest.raises(ConfigError, match="unknown model field"):
        load_preset("nano", n_layers=2)


def _matmul_weights(cfg: ModelConfig) -> int:
    """Weights multiplied per token, counted independently: qkv, proj, MLP matrices, and the real-vocab head."""
    d, hd = cfg.n_embd, cfg.head_dim
    qkv = d * (cfg.n_head + 2 * cfg.n_kv_head) * hd
    mlp = d * cfg.mlp_hidden * (3 if cfg.mlp == "swiglu" else 2)
    return cfg.n_layer * (qkv + d * d + mlp) + cfg.vocab_size * d


@pytest.mark.parametrize("name", ["nano", "gpt2-124m", "llama-1b", "llama-10b"])
def test_flops_per_token(name: str) -> None:
    cfg = load_preset(name)
    n, L, T, d = _matmul_weights(cfg), cfg.n_layer, cfg.context_length, cfg.n_embd
    assert flops_per_token(cfg) == 6 * n + 12 * L * T * d
    assert flops_per_token(cfg, training=False) == 2 * n + 4 * L * T * d
    assert flops_per_token(cfg, context=128) == 6 * n + 12 * L * 128 * d


def test_gpt2_flops_reference_number() -> None:
    """GPT-2 small: 85.0M block matmul weights + 38.6M head → 6N ≈ 0.742 GFLOP, attention 12·L·T·d ≈ 0.113."""
    assert flops_per_token(load_preset("gpt2-124m")) == 6 * (84_934_656 + 38_597_376) + 12 * 12 * 1024 * 768


# --------------------------------------------------------------------------------------------------- CLI
@pytest.mark.slow  # a fresh interpreter imports torch: a few seconds
def test_cli_prints_the_table() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "scratchllm.model"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "124,439,808" in result.stdout
    for name in preset_names():
        assert f"| {name} |" in result.stdout
    assert "MISMATCH" not in result.stdout


def test_cli_bad_preset_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """In-process (the subprocess test above already covers the ``python -m`` → ``sys.exit(main())`` wiring)."""
    from scratchllm.model.__main__ import main

    assert main(["nano", "no-such-model"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "no-such-model" in lines[0] and "nano" in lines[0]
    assert "Traceback" not in captured.err and captured.out == ""


def test_cli_named_presets_only(capsys: pytest.CaptureFixture[str]) -> None:
    from scratchllm.model.__main__ import main

    assert main(["nano", "gpt2-124m"]) == 0
    out = capsys.readouterr().out
    assert "| nano |" in out and "| gpt2-124m |" in out and "| micro |" not in out
    assert "124,439,808" in out and "809,856" in out and "MISMATCH" not in out
