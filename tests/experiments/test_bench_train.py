"""The training benchmark (experiments/bench): its plain loop trains exactly like the Trainer, its timer and
report arithmetic, the ceilings, and one tiny end-to-end run of the entry point."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "experiments"))

from bench import report  # noqa: E402
from bench.ceilings import Ceilings, MatmulRate, matmul_rate, read_bandwidth_gbs  # noqa: E402
from bench.plan import Job, build_plan  # noqa: E402
from bench.timing import StepTimer  # noqa: E402
from bench.worker import run_job  # noqa: E402


def _job(loop: str, cache: Path, **changes) -> Job:
    fields = dict(model="nano", batch=4, steps=3, warmup=1, context=32, precision="32-true", compile=False,
                  optimizer="foreach", loop=loop, data="shards", cache_dir=str(cache), threads=1)
    return Job(**{**fields, **changes})


def test_plain_loop_trains_exactly_like_the_trainer(tmp_path):
    """Same seed, same batches from the ShardDataModule, same AdamW/schedule/clipping: same losses, step by step.
    This is what makes the tokens/s comparison a measure of loop overhead and nothing else."""
    cache = tmp_path / "cache"
    plain = run_job(_job("plain", cache), tmp_path / "plain")
    trainer = run_job(_job("lightning", cache), tmp_path / "lightning")
    assert len(plain["losses"]) == 4  # warm-up + measured steps
    assert plain["losses"] == pytest.approx(trainer["losses"], rel=1e-6)
    assert plain["losses"][0] == pytest.approx(torch.log(torch.tensor(77.0)).item(), abs=0.3)  # char vocab 77
    for result in (plain, trainer):
        assert result["vocab_size"] == 77 and result["context"] == 32 and result["tokens_per_step"] == 128
        assert result["tokens_per_s"] == pytest.approx(128 / result["step_s_mean"])
        assert result["peak_rss_mib"] >= result["baseline_rss_mib"] > 0
        assert result["achieved_gflops"] == pytest.approx(result["flops_per_token"] * result["tokens_per_s"] / 1e9)


@pytest.mark.parametrize("precision", ["bf16-mixed", "bf16-true"])
def test_plain_loop_applies_precision_like_the_trainer(tmp_path, precision):
    """Autocast for bf16-mixed, bf16 weights (and default dtype) for bf16-true: the same losses as Lightning's
    precision plugins, on random ids at the preset's own vocabulary."""
    jobs = {loop: _job(loop, tmp_path, precision=precision, data="random") for loop in ("plain", "lightning")}
    losses = {loop: run_job(job, tmp_path / loop)["losses"] for loop, job in jobs.items()}
    assert losses["plain"] == pytest.approx(losses["lightning"], rel=1e-6)
    assert losses["plain"][0] == pytest.approx(torch.log(torch.tensor(65.0)).item(), abs=0.3)


def test_step_timer_window_excludes_warmup():
    timer = StepTimer(warmup=2, steps=3)
    timer.start, timer.ends = 10.0, [15.0, 16.0, 18.0, 21.0, 25.0]  # step 0 took 5 s (compile), then 1, 2, 3, 4
    timer.cpu_marks = {-1: 0.0, 1: 4.0, 4: 10.0}
    timer.losses = [None] * 5
    s = timer.summary()
    assert s["first_step_s"] == 5.0 and s["warmup_s"] == 6.0
    assert s["window_s"] == 9.0 and s["step_s_mean"] == 3.0 and s["step_s_median"] == 3.0
    assert (s["step_s_min"], s["step_s_max"]) == (2.0, 4.0)
    assert s["cpu_s_per_step"] == 2.0


def test_step_timer_refuses_a_short_run():
    timer = StepTimer(warmup=1, steps=3)
    timer.begin()
    timer.step_end(None)
    with pytest.raises(RuntimeError, match="1 of 4 steps"):
        timer.summary()


def test_ceilings_are_positive_and_sized_within_the_cap():
    rate = matmul_rate(torch.float32, seconds=0.01, min_seconds=10.0, max_n=256, start_n=128)
    assert rate.n == 256 and rate.gflops > 0 and rate.dtype == "float32"
    assert read_bandwidth_gbs(8, repeats=2) > 0


def _ceilings(fp32: float = 100.0, bf16: float = 400.0) -> Ceilings:
    return Ceilings("cpu", MatmulRate("float32", 1024, fp32, 3), MatmulRate("bfloat16", 1024, bf16, 3), 10.0, 64)


def _run(loop: str, tokens_per_s: float, **changes) -> report.Run:
    fields = dict(model="micro", batch=12, steps=10, warmup=2, precision="32-true", compile=False,
                  optimizer="foreach", loop=loop)
    job = Job(**{**fields, **changes})
    step = 3072 / tokens_per_s
    return report.Run(job, {"tokens_per_s": tokens_per_s, "step_s_mean": step, "cpu_s_per_step": step,
                            "achieved_gflops": tokens_per_s * 1e6 / 1e9})


def test_mfu_uses_the_ceiling_of_the_compute_dtype():
    c = _ceilings()
    assert _run("plain", 50_000).mfu(c) == pytest.approx(50.0)  # 50 GFLOP/s of a 100 fp32 ceiling
    assert _run("plain", 50_000, precision="bf16-mixed").mfu(c) == pytest.approx(12.5)  # of the 400 bf16 one


def test_overhead_rows_and_the_target_check():
    runs = [_run("plain", 1000.0), _run("lightning", 980.0), _run("lightning-default", 900.0),
            _run("plain", 1020.0, repeat=1), _run("lightning", 975.0, repeat=1), _run("plain", 990.0, repeat=2)]
    rows = {r["loop"]: r for r in report.overhead_rows(runs)}
    # medians: plain 1000 (of 990, 1000, 1020), lightning 975 (lower middle of 975, 980)
    assert rows["lightning"]["overhead_pct"] == pytest.approx(2.5)
    assert rows["lightning-default"]["overhead_pct"] == pytest.approx(10.0)
    assert rows["lightning"]["extra_ms_per_step"] == pytest.approx(1e3 * (3072 / 975 - 3072 / 1000))
    (check,) = report.target_checks(list(rows.values()))
    assert "+2.5%" in check and check.endswith("→ met")
    rows["lightning"]["overhead_pct"] = 3.5
    assert report.target_checks([rows["lightning"]])[0].endswith("→ NOT met")
    assert report.target_checks([])[0].endswith("not in this run's grid")


def test_speedup_rows_against_eager_fp32_and_the_target_check():
    runs = [_run("lightning", 1000.0), _run("lightning", 2100.0, precision="bf16-mixed"),
            _run("lightning", 2600.0, precision="bf16-mixed", compile=True, attention="explicit", optimizer="fused"),
            _run("plain", 1100.0)]
    rows = report.speedup_rows(runs)
    lightning = [r for r in rows if r["loop"] == "lightning"]
    assert [round(r["speedup"], 2) for r in lightning] == [2.6, 2.1, 1.0]  # best first, each over its loop's fp32
    assert [r["speedup"] for r in rows if r["loop"] == "plain"] == [1.0]
    checks = report.speedup_checks(rows)
    assert any("lightning loop" in c and "2.60×" in c and c.split("→")[1].startswith(" met") for c in checks)
    assert "| micro | lightning | bf16-mixed | on | fused | explicit | 2,600 | 1,000 | 2.60× |" in \
        report.speedup_table(rows)
    # the configuration key tells the attention paths apart, so both rows survive grouping
    assert _run("plain", 1.0).job.config_key != _run("plain", 1.0, attention="explicit").job.config_key


def test_plan_alternates_loops_within_each_configuration():
    jobs = build_plan(["nano", "gpt2-124m"], ["32-true", "bf16-true"], ["off"], ["foreach"], ["plain", "lightning"],
                      repeats=2)
    assert len(jobs) == 2 * 2 * 2 * 2
    assert [j.loop for j in jobs[:4]] == ["plain", "lightning", "plain", "lightning"]
    assert {j.config_key for j in jobs[:4]} == {jobs[0].config_key}
    assert jobs[-1].batch == 1 and jobs[0].batch == 32  # per-preset defaults
    assert Job.from_json(jobs[0].to_json()) == jobs[0]


@pytest.mark.parametrize("flags, picked", [
    (frozenset({"amx_bf16"}), ("bf16-mixed", True, "explicit")),  # the fast path: two configurations alternate
    (frozenset({"avx2"}), None),  # no native bf16: auto is eager fp32, one configuration
])
def test_auto_plan_pairs_the_defaults_with_eager_fp32(monkeypatch, flags, picked):
    from bench import run
    from scratchllm.training import auto

    monkeypatch.setattr(auto, "cpu_flags", lambda: flags)
    monkeypatch.setattr(auto, "cxx_compiler", lambda env=None: ("/usr/bin/c++", "C++ compiler /usr/bin/c++"))
    args = run.parse_args(["--models", "micro", "--auto", "--loops", "lightning", "--repeats", "2", "--device", "cpu"])
    jobs, chosen = run.auto_plan(args, dict(repeats=2, device="cpu"))
    keys = [(j.precision, j.compile, j.attention, j.optimizer) for j in jobs]
    eager = [("32-true", False, "sdpa", "foreach"), ("32-true", False, "sdpa", "fused")]  # the reference first
    assert chosen["optimizer"] == "fused"  # torch's fused AdamW, the default on CPU
    if picked is None:  # auto = eager fp32 with the default (fused) AdamW
        assert keys == eager * 2 and chosen["precision"] == "32-true"
        return
    assert keys == (eager + [(*picked, "fused")]) * 2  # alternating, job by job
    rows = report.speedup_rows([
        _run("lightning", 1000.0), _run("lightning", 1020.0, optimizer="fused"),
        _run("lightning", 3100.0, precision="bf16-mixed", compile=True, attention="explicit", optimizer="fused")])
    line, same_optimizer = report.auto_checks(rows, chosen)
    assert "3.10× eager fp32 (foreach AdamW) (target ≥ 3.0×) → met" in line
    assert same_optimizer.strip() == "- against eager fp32 with the same fused AdamW (1,020 tokens/s): 3.04×"


def test_entry_point_writes_markdown_and_csv(tmp_path):
    """The parent side in-process (ceilings, plan, report), one job in a worker process (the script's own path)."""
    from bench import run

    argv = ["--models", "nano", "--context", "16", "--batch", "2", "--steps", "2", "--warmup", "1",
            "--precisions", "32-true", "--compile", "off", "--optimizers", "foreach", "--loops", "plain",
            "--data", "random", "--threads", "1", "--ceiling-seconds", "0.01", "--bandwidth-mib", "16",
            "--max-n", "256", "--out", str(tmp_path), "--tag", "t"]
    md = run.main(argv)
    assert md == next(tmp_path.glob("bench_*_t.md"))
    text = md.read_text()
    assert "| matmul fp32 | 256² " in text and "| memory read (fp32 sum) | 16 MiB |" in text
    assert "| nano | 0.80M | 2×16 | 32-true | off | foreach | sdpa | plain |" in text  # random ids: the preset's vocab 65
    assert "--data random" in text and "## Failed runs" not in text
    header = next(csv.reader(open(md.with_suffix(".csv"))))
    assert len(header) == len(set(header))
    (row,) = csv.DictReader(open(md.with_suffix(".csv")))
    assert row["loop"] == "plain" and not row["error"] and row["context_length"] == "16" and row["torch_threads"] == "1"
    assert float(row["tokens_per_s"]) == pytest.approx(32 / float(row["step_s_mean"]), rel=1e-4)
    assert 0 < float(row["mfu_pct"]) < 100


@pytest.mark.gpu
def test_cuda_path(tmp_path):
    plain = run_job(_job("plain", tmp_path / "cache", device="cuda", data="random"), tmp_path / "p")
    trainer = run_job(_job("lightning", tmp_path / "cache", device="cuda", data="random"), tmp_path / "l")
    assert plain["cuda_peak_mib"] > 0 and trainer["cuda_peak_mib"] > 0
    assert plain["losses"] == pytest.approx(trainer["losses"], rel=1e-4)
