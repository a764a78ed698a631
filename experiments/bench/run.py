"""Training-speed benchmark: what the machine can do, and how close the template's training gets to it.

One run measures, on one machine:

1. the ceilings (``ceilings.py``): best large-matmul GFLOP/s in fp32 and bf16, and memory read GB/s;
2. for each preset × precision (32-true, bf16-mixed, bf16-true) × compile (off/on) × AdamW (foreach/fused):
   tokens/s, step time, peak memory, compile time and MFU, for three loops run in alternating fresh processes:
   ``plain`` (``plain_loop.py``: a PyTorch loop, no Lightning), ``lightning`` (run.train's Trainer with no logger,
   callbacks, checkpoints or progress bar: the loop itself) and ``lightning-default`` (run.train's defaults);
3. the Trainer's overhead against the plain loop, and the issue's target (≤ 3% on micro, default precision).

Data: ``--data shards`` (default) streams real batches from the ShardDataModule over Shakespeare's plays (char
tokenizer for nano/micro, so their vocabulary is the corpus's 77 characters; gpt2 for gpt2-124m); ``--data random``
uses uniform random ids at the preset's own vocabulary. MFU = flops_per_token(model) × tokens/s ÷ the matmul ceiling
of the dtype the step computes in (fp32 for 32-true, bf16 for both bf16 modes). Every job runs in a fresh process
(peak memory is a process high-water mark) with a fresh TorchInductor cache (compile times are cold).

Full run (quiet machine; roughly 2-3 h on 2 CPU cores, over half of it TorchInductor compiling: 108 jobs)::

    python experiments/bench/run.py

or in parts, one model per command (``--tag`` keeps the result files apart)::

    python experiments/bench/run.py --models nano --tag nano        # ~25 min
    python experiments/bench/run.py --models micro --tag micro      # ~40 min
    python experiments/bench/run.py --models gpt2-124m --tag gpt2   # ~1.5 h

The overhead target alone, repeated (~10 min)::

    python experiments/bench/run.py --models micro --precisions 32-true --compile off --optimizers foreach \
        --repeats 5 --tag overhead

The auto defaults against eager fp32 (the "fast by default" target: ≥ 3.0× on micro), two configurations
alternating in one run — what ``precision=auto compile=auto model.attention=auto`` resolve to on this device, and
32-true / eager / SDPA::

    python experiments/bench/run.py --models micro --auto --loops lightning --repeats 3 --tag auto

Smoke run (about a minute): ``python experiments/bench/run.py --quick``. Add ``--profile`` to write a cProfile of
each measured window next to the results (it slows the runs it profiles). Results:
``experiments/results/bench_<date>[_<tag>].{md,csv}``, with the machine, versions and this command.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__":  # run as a script: make `bench` importable, drop this folder from the path
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import torch

from bench import report
from bench.ceilings import measure_ceilings, matmul_rate
from bench.machine import REPO, machine_info
from bench.plan import ATTENTION, COMPILE, DATA, LOOPS, OPTIMIZERS, PRECISIONS, SIZE_DEFAULTS, Job, build_plan

RESULTS = REPO / "experiments" / "results"
WORKER = Path(__file__).resolve().parent / "worker.py"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: nano, 5 steps, 32-true, compile off, foreach, the three loops once")
    p.add_argument("--models", nargs="+", default=None, help=f"presets (default: {' '.join(SIZE_DEFAULTS)})")
    p.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=None)
    p.add_argument("--compile", nargs="+", choices=COMPILE, default=None, dest="compile_modes")
    p.add_argument("--optimizers", nargs="+", choices=OPTIMIZERS, default=None)
    p.add_argument("--loops", nargs="+", choices=LOOPS, default=None)
    p.add_argument("--attention", nargs="+", choices=ATTENTION, default=None, dest="attentions",
                   help="model.attention values (default: sdpa; explicit is the faster one compiled on CPU)")
    p.add_argument("--batch", type=int, default=None, help="batch size for every model (default: per preset)")
    p.add_argument("--context", type=int, default=None, help="context length for every model (default: preset's)")
    p.add_argument("--steps", type=int, default=None, help="measured steps (default: per preset)")
    p.add_argument("--warmup", type=int, default=None, help="unmeasured warm-up steps (default: per preset)")
    p.add_argument("--repeats", type=int, default=1, help="alternating runs of each loop per configuration")
    p.add_argument("--data", choices=DATA, default="shards")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch threads in every process (default: torch's)")
    p.add_argument("--cache-dir", default=str(REPO / "data_cache"), help="the shard cache (data=shards)")
    p.add_argument("--ceiling-seconds", type=float, default=None, help="time spent per matmul ceiling")
    p.add_argument("--bandwidth-mib", type=int, default=None)
    p.add_argument("--max-n", type=int, default=None, help="largest matmul side tried (default 8192, 16384 on CUDA)")
    p.add_argument("--timeout", type=int, default=3600, help="seconds allowed per job")
    p.add_argument("--profile", action="store_true", help="cProfile each measured window (slows those runs)")
    p.add_argument("--dry-run", action="store_true", help="list the jobs and exit")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--tag", default=None, help="suffix of the result files (default: 'quick' with --quick)")
    p.add_argument("--auto", action="store_true",
                   help="only two configurations, alternating: what the auto defaults pick on this device "
                        "(training/auto.py) and eager fp32 with SDPA (replaces --precisions/--compile/--optimizers/"
                        "--attention)")
    args = p.parse_args(argv)
    for name, low in (("steps", 1), ("warmup", 0), ("repeats", 1), ("batch", 1), ("context", 1), ("threads", 1)):
        value = getattr(args, name)
        if value is not None and value < low:
            p.error(f"--{name} must be >= {low}, got {value}")
    if args.quick:
        args.models = args.models or ["nano"]
        args.precisions = args.precisions or ["32-true"]
        args.compile_modes = args.compile_modes or ["off"]
        args.optimizers = args.optimizers or ["foreach"]
        args.steps = args.steps or 5
        args.warmup = 2 if args.warmup is None else args.warmup
        args.ceiling_seconds = args.ceiling_seconds or 0.5
        args.bandwidth_mib = args.bandwidth_mib or 256
        args.tag = args.tag or "quick"
    args.models = args.models or list(SIZE_DEFAULTS)
    args.precisions = args.precisions or list(PRECISIONS)
    args.compile_modes = args.compile_modes or list(COMPILE)
    args.optimizers = args.optimizers or list(OPTIMIZERS)
    args.loops = args.loops or list(LOOPS)
    args.attentions = args.attentions or ["sdpa"]
    args.ceiling_seconds = args.ceiling_seconds or 3.0
    args.bandwidth_mib = args.bandwidth_mib or 1024
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    return args


def prepare_data(jobs: list[Job], work: Path) -> None:
    """Tokenise the corpus once per tokenizer here, so no job pays (or races for) the shard cache."""
    from bench.compose import compose_job_config
    from scratchllm.training.run import build_datamodule

    seen = set()
    for job in jobs:
        if job.data != "shards" or job.model in seen:
            continue
        seen.add(job.model)
        build_datamodule(compose_job_config(job, work).data).prepare_data()


def run_job(job: Job, index: int, work: Path, timeout: int) -> report.Run:
    job_file, result_file = work / f"job{index}.json", work / f"result{index}.json"
    job_file.write_text(job.to_json())
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TORCHINDUCTOR_CACHE_DIR": str(work / f"inductor{index}"),
           "TRITON_CACHE_DIR": str(work / f"triton{index}")}
    log = work / f"job{index}.log"
    try:
        with open(log, "w") as f:
            subprocess.run([sys.executable, str(WORKER), str(job_file), str(result_file)], stdout=f,
                           stderr=subprocess.STDOUT, env=env, cwd=REPO, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return report.Run(job, {"error": f"timed out after {timeout} s"})
    if not result_file.is_file():
        tail = log.read_text().strip().splitlines()[-1:] or ["no output"]
        return report.Run(job, {"error": f"worker died: {tail[0][:300]}"})
    return report.Run(job, json.loads(result_file.read_text()))


def describe(job: Job) -> str:
    return (f"{job.model} b{job.batch} {job.precision} compile={'on' if job.compile else 'off'} {job.optimizer} "
            f"{job.attention} {job.loop}" + (f" #{job.repeat + 1}" if job.repeat else ""))


def auto_plan(args: argparse.Namespace, common: dict) -> tuple[list[Job], dict]:
    """``--auto``: eager fp32 and the auto defaults' configuration, alternating job by job (same loops, repeats).
    Eager fp32 runs with the foreach AdamW first (the reference: every fast setting off, as the issue measured
    it) and, where the default optimizer is another, with that one too (what ``precision=32-true compile=false``
    alone gives today)."""
    from bench.compose import auto_defaults

    chosen = auto_defaults(args.device)
    optimizer = str(chosen["optimizer"])
    plans = [build_plan(args.models, ["32-true"], ["off"], [name], args.loops, attentions=["sdpa"], **common)
             for name in dict.fromkeys(["foreach", optimizer])]
    picked = build_plan(args.models, [str(chosen["precision"])], ["on" if chosen["compile"] else "off"], [optimizer],
                        args.loops, attentions=[str(chosen["attention"])], **common)
    if picked not in plans:  # else auto picks eager fp32 here (no native bf16)
        plans.append(picked)
    return [job for group in zip(*plans) for job in group], chosen


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    common = dict(repeats=args.repeats, batch=args.batch, steps=args.steps, warmup=args.warmup, context=args.context,
                  data=args.data, device=args.device, threads=args.threads, cache_dir=args.cache_dir,
                  profile=args.profile)
    chosen = None
    if args.auto:
        jobs, chosen = auto_plan(args, common)
        print("auto defaults here: " + "; ".join(chosen["reasons"]), file=sys.stderr, flush=True)
    else:
        jobs = build_plan(args.models, args.precisions, args.compile_modes, args.optimizers, args.loops,
                          attentions=args.attentions, **common)
    if args.dry_run:
        for i, job in enumerate(jobs, 1):
            print(f"{i:3d}  {describe(job)}  steps={job.warmup}+{job.steps}")
        print(f"{len(jobs)} jobs")
        return args.out
    if args.threads:
        torch.set_num_threads(args.threads)
    argv_used = sys.argv[1:] if argv is None else argv
    command = "python " + " ".join(shlex.quote(a) for a in ["experiments/bench/run.py", *argv_used])
    machine = machine_info(args.device)
    stem = f"bench_{dt.date.today():%Y-%m-%d}" + (f"_{args.tag}" if args.tag else "")
    args.out.mkdir(parents=True, exist_ok=True)

    print(f"ceilings on {args.device} …", file=sys.stderr, flush=True)
    ceilings = measure_ceilings(args.device, seconds=args.ceiling_seconds, bandwidth_mib=args.bandwidth_mib,
                                max_n=args.max_n)
    print(f"  fp32 {ceilings.fp32.gflops:,.0f} GFLOP/s (n={ceilings.fp32.n}), bf16 {ceilings.bf16.gflops:,.0f} "
          f"GFLOP/s (n={ceilings.bf16.n}), read {ceilings.bandwidth_gbs:.1f} GB/s", file=sys.stderr, flush=True)

    runs: list[report.Run] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="scratchllm-bench-") as tmp:
        work = Path(tmp)
        prepare_data(jobs, work)
        for i, job in enumerate(jobs):
            run = run_job(job, i, work, args.timeout)
            runs.append(run)
            if args.profile and (work / f"result{i}.prof.txt").is_file():
                folder = args.out / f"{stem}_profiles"
                folder.mkdir(exist_ok=True)
                name = describe(job).replace(" ", "_").replace("=", "-").replace("#", "r")
                (folder / f"{i:03d}_{name}.txt").write_text((work / f"result{i}.prof.txt").read_text())
            elapsed = time.perf_counter() - started
            eta = elapsed / (i + 1) * (len(jobs) - i - 1)
            status = (f"{run.result['tokens_per_s']:,.0f} tokens/s, step {run.result['step_s_median'] * 1e3:.1f} ms"
                      if run.ok else run.result["error"])
            print(f"[{i + 1}/{len(jobs)}] {describe(job)}: {status}  (elapsed {elapsed:.0f} s, eta {eta:.0f} s)",
                  file=sys.stderr, flush=True)
    fp32_after = matmul_rate(torch.float32, args.device, seconds=min(args.ceiling_seconds, 1.0),
                             min_seconds=0.02 if args.device == "cuda" else 0.1, max_n=ceilings.fp32.n,
                             start_n=ceilings.fp32.n)
    load_after = os.getloadavg()[0]

    overhead = report.overhead_rows(runs)
    data_note = ("real batches from the ShardDataModule stream over Shakespeare's plays (char tokenizer: vocab 77; "
                 "gpt2 tokenizer for 50257-vocab presets)" if args.data == "shards" else
                 "uniform random ids at the preset's vocabulary (a fixed pool of 8 batches, cycled)")
    lines = [
        f"# Training benchmark ({'smoke run: timings are not meaningful, ' if args.quick else ''}"
        f"{machine['date']})",
        "",
        f"- command: `{command}`",
        f"- machine: {machine['cpu']}, {machine['physical_cores']} cores / {machine['logical_cpus']} logical CPUs, "
        f"flags: {machine['cpu_flags']}; torch CPU capability {machine['torch_cpu_capability']}; torch threads "
        f"{machine['torch_threads']}" + (f"; GPU {machine['gpu']}" if machine["gpu"] else ""),
        f"- versions: python {machine['python']}, torch {machine['torch']}, lightning {machine['lightning']}; "
        f"scratchllm commit {machine['commit']}",
        f"- load average (1 min) before / after: {machine['load_avg_1min']:.2f} / {load_after:.2f}; fp32 matmul "
        f"ceiling before / after: {ceilings.fp32.gflops:,.0f} / {fp32_after.gflops:,.0f} GFLOP/s (other work on "
        "the machine slows every figure)",
        f"- data: {data_note}; device {args.device}; every job in a fresh process, fresh inductor cache",
        f"- total time {time.perf_counter() - started:.0f} s for {len(jobs)} jobs",
        "",
        "## Ceilings",
        "",
        report.ceilings_table(ceilings),
        "",
        "## Training throughput",
        "",
        report.results_table(runs, ceilings, args.device),
        "",
        "tokens/s and step time over the measured steps after the warm-up steps; when repeated, the run with the "
        "median tokens/s (range in brackets). MFU = model FLOPs/token (6N + attention, "
        "scratchllm.model.flops_per_token) × tokens/s ÷ the matmul ceiling of the step's compute dtype (fp32 for "
        "32-true, bf16 otherwise). Peak RSS: the process's high-water mark (VmHWM), Δ over the resident memory "
        "after imports. compile s: first step − a steady step.",
        "",
        "## Lightning overhead against the plain loop",
        "",
        report.overhead_table(overhead) if overhead else "(no configuration ran both the plain loop and a Trainer)",
        "",
        *report.target_checks(overhead),
    ]
    speedups = report.speedup_rows(runs)
    if speedups:
        lines += ["", "## Speed-up over eager fp32 (same model, batch and loop)", "",
                  report.speedup_table(speedups), "", *report.speedup_checks(speedups)]
    if chosen is not None:
        lines += ["", "## The auto defaults", "", *[f"- {line}" for line in chosen["reasons"]], "",
                  *report.auto_checks(speedups, chosen)]
    errors = report.errors(runs)
    if errors:
        lines += ["", "## Failed runs", "", *errors]
    text = "\n".join(lines) + "\n"
    print(text)
    (args.out / f"{stem}.md").write_text(text)
    report.write_csv(args.out / f"{stem}.csv", runs, ceilings, machine, command)
    print(f"wrote {args.out / stem}.md and .csv", file=sys.stderr)
    return args.out / f"{stem}.md"


if __name__ == "__main__":
    main()
