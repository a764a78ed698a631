"""The decode benchmarks' own logic: limits from the strictest probe, the checks, the kernel floor, the line fit."""

from __future__ import annotations

import sys
from pathlib import Path
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "experiments"))

import bench_generate  # noqa: E402
import bench_matvec_stream  # noqa: E402
from scratchllm.model import GPT, ModelConfig  # noqa: E402


def _row(engine: str, dtype: str, cache: str, tokens_per_s: float, n: int = 1024) -> bench_generate.Row:
    return bench_generate.Row("gpt2-124m", n, engine, dtype, cache, tokens_per_s, n / tokens_per_s, "measured",
                              bytes_per_token=250_000_000 if dtype == "bfloat16" else 500_000_000, bandwidth_gbs=25.0)


def test_limit_is_bandwidth_over_weight_bytes_and_checks_name_each_target():
    rows = [
        _row("scratchllm", "float32", "yes", 40.0),
        _row("scratchllm", "float32", "no", 2.0),
        _row("transformers (sdpa)", "float32", "yes", 32.0),
        _row("scratchllm", "bfloat16", "yes", 50.0),
        _row("linears only (floor)", "bfloat16", "-", 80.0),
    ]
    assert rows[3].limit_tokens_per_s == pytest.approx(100.0)  # 25 GB/s / 250 MB
    assert rows[3].pct_of_limit == pytest.approx(50.0)
    lines = bench_generate.checks(rows)
    assert "20.0x" in lines[0] and lines[0].endswith("met")
    assert "1.25x" in lines[1] and lines[1].endswith("met")
    assert "50% of the bandwidth limit" in lines[2] and lines[2].endswith("NOT met")
    assert "80% of the limit" in lines[3] and "62% of the floor" in lines[3]


def _tiny(tie: bool) -> GPT:
    return GPT(ModelConfig(vocab_size=65, context_length=16, n_layer=2, n_head=4, n_embd=32, mlp_hidden=64,
                           tie_embeddings=tie)).eval()


@pytest.mark.parametrize("tie", [True, False])
def test_weight_bytes_read_the_head_in_full_and_one_row_of_each_embedding(tie: bool):
    model = _tiny(tie)
    expected = sum(p.numel() for p in model.parameters()) - model.pos_emb.weight.numel()  # parameters() dedups
    if not tie:
        expected -= model.tok_emb.weight.numel()
    assert bench_generate.weight_bytes(model, 2) == 2 * expected


def test_linears_only_floor_times_every_linear_and_leaves_the_model_as_it_was():
    model = _tiny(True).to(torch.bfloat16)
    seconds = bench_generate.time_linears_only(model, steps=2)
    assert 0 < seconds < 1
    assert not any("forward" in m.__dict__ for m in model.modules())


def test_fit_recovers_a_fixed_cost_and_a_rate():
    points = [(b, 20e-6 + b / 25e9) for b in (1e6, 4e6, 9e6, 19e6)]
    fixed, rate = bench_matvec_stream.fit(points)
    assert fixed == pytest.approx(20e-6, rel=1e-6) and rate == pytest.approx(25e9, rel=1e-6)


def test_one_nocache_sample_is_refused():
    """One sampled window length cannot be integrated over a run (it once counted one step for all 256 tokens)."""
    import subprocess

    r = subprocess.run([sys.executable, str(REPO / "experiments" / "bench_generate.py"), "--nocache-samples", "1"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--nocache-samples must be >= 2" in r.stderr


def test_quantize_bytes_table_matches_the_format_arithmetic():
    """`bench_quantize.py --bytes-only`: int8 sits just above 0.5x bf16 (per-row scales), int4 shrinks with the
    group size; the figures the README quotes come from this table."""
    import subprocess

    r = subprocess.run([sys.executable, str(REPO / "experiments" / "bench_quantize.py"), "--bytes-only", "--quick"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    ratio = {line.split("|")[1].strip(): float(line.split("|")[4]) for line in r.stdout.splitlines()
             if line.startswith("| ") and line.split("|")[4].strip()[:1].isdigit()}
    assert ratio["bf16"] == 1.0 and 0.5 < ratio["int8"] < 0.52
    assert ratio["int4 group 32"] > ratio["int4 group 64"] > ratio["int4 group 128"] > 0.25
