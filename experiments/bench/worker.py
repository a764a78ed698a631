"""One ``Job`` in this process: ``python experiments/bench/worker.py JOB.json RESULT.json`` (run.py starts these).

The result holds the timer's summary, tokens/s, achieved GFLOP/s (model FLOPs per token × tokens/s), peak
memory, and the model's real config (its vocabulary comes from the tokenizer). MFU needs the machine's ceiling,
which the parent measured once, so the parent computes it.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as a script: make `bench` importable, drop this folder from the path
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import torch

from bench.compose import compose_job_config
from bench.lightning_loop import train_lightning
from bench.memory import peak_rss_mib, rss_mib
from bench.plain_loop import train_plain
from bench.plan import Job
from bench.timing import StepTimer
from scratchllm.heap import apply_heap
from scratchllm.model import ModelConfig, flops_per_token, param_report


def run_job(job: Job, work_dir: Path, profile_path: str | None = None) -> dict[str, Any]:
    if job.threads:
        torch.set_num_threads(job.threads)
    if job.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    work_dir.mkdir(parents=True, exist_ok=True)
    baseline_rss = rss_mib()
    cfg = compose_job_config(job, work_dir)
    started = time.perf_counter()
    if job.loop == "plain":
        apply_heap(cfg.get("heap"), job.device)  # what run.train sets up for the Lightning loops: both alike
        timer = StepTimer(job.warmup, job.steps, job.device, profile_path)
        model = train_plain(cfg, timer, job.device)
        summary = {**timer.summary(), "model_config": model.config.to_dict()}
    else:
        summary = train_lightning(cfg, work_dir / "clock.json", job.warmup, job.steps, job.device, profile_path)
    total_s = time.perf_counter() - started
    config = ModelConfig.from_dict(summary.pop("model_config"))
    tokens_per_step = job.batch * config.context_length
    tokens_per_s = tokens_per_step / summary["step_s_mean"]
    fpt = flops_per_token(config)
    return {
        **summary,
        "context": config.context_length,
        "vocab_size": config.vocab_size,
        "params": param_report(config).total,
        "tokens_per_step": tokens_per_step,
        "tokens_per_s": tokens_per_s,
        "flops_per_token": fpt,
        "achieved_gflops": fpt * tokens_per_s / 1e9,
        "compile_s": max(0.0, summary["first_step_s"] - summary["step_s_median"]) if job.compile else 0.0,
        "run_s": total_s,
        "baseline_rss_mib": baseline_rss,
        "peak_rss_mib": peak_rss_mib(),
        "cuda_peak_mib": torch.cuda.max_memory_allocated() / 2**20 if job.device == "cuda" else None,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    job_path, result_path = Path(sys.argv[1]), Path(sys.argv[2])
    job = Job.from_json(job_path.read_text())
    profile_path = str(result_path.with_suffix(".prof.txt")) if job.profile else None
    try:
        with tempfile.TemporaryDirectory(prefix="scratchllm-bench-") as tmp:
            result = run_job(job, Path(tmp), profile_path)
    except Exception as exc:  # reported in the table, the grid goes on
        traceback.print_exc()
        result = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]}
    result_path.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
