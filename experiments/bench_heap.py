"""``heap=keep`` against ``heap=default`` (glibc's own thresholds): the training command itself, A/B in one run.

    python experiments/bench_heap.py                      # nano 600 steps and micro 60 steps, 3 pairs each
    python experiments/bench_heap.py --quick              # nano 100 steps, 1 pair (a smoke run)

Each run is ``python -m scratchllm.train`` in a fresh process (the default recipe, compiled as auto would on a
machine with native bf16, no validation or sample), the two settings alternating after one unmeasured warm-up run
that fills the compile cache. Per run: training tokens/s (the run's own result line), and the child's minor page
faults, system CPU time and peak RSS (``getrusage``). Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.machine import header_lines, machine_info
from scratchllm.heap import without_allocator_env

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"nano": ["model=nano"], "micro": ["model=micro", "data.batch_size=12"]}


def child_env() -> dict[str, str]:
    """This environment without allocator settings, so ``heap=default`` really is glibc's own thresholds."""
    return without_allocator_env(dict(os.environ))


def run_once(model: str, steps: int, heap: str, work: Path) -> dict:
    cmd = [sys.executable, "-m", "scratchllm.train", *MODELS[model], f"trainer.max_steps={steps}", "compile=true",
           "validate=false", "sample.max_new_tokens=0", "trainer.val_check_interval=null", f"heap={heap}",
           f"paths.root_dir={work}", f"paths.cache_dir={work / 'data_cache'}"]
    log = work / "run.log"
    started = time.perf_counter()
    with open(log, "w") as f:  # wait4: this child's own rusage (RUSAGE_CHILDREN's maxrss is over all children)
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                                env=child_env())
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text()
    lines = [ln for ln in text.splitlines() if ln.startswith("result: ")]
    if proc.returncode or not lines:
        sys.exit(f"run failed ({heap}, {model}):\n{text[-3000:]}")
    result = json.loads(lines[-1][len("result: "):])
    return {"tokens_per_s": result["tokens_per_s"], "wall_s": wall, "minflt_per_step": usage.ru_minflt / steps,
            "sys_s": usage.ru_stime, "peak_rss_mib": usage.ru_maxrss / 1024, "heap": result["fast_path"]["heap"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--out", type=Path, default=None, help="also write the Markdown table here")
    args = p.parse_args()
    plan = [("nano", 100)] if args.quick else [("nano", 600), ("micro", 60)]
    pairs = 1 if args.quick else args.pairs
    machine = machine_info("cpu")  # before the runs: the load average is the idle machine's
    rows = []
    with tempfile.TemporaryDirectory(prefix="scratchllm-heap-") as tmp:
        work = Path(tmp)
        for model, steps in plan:
            print(f"{model}: warm-up run (compile cache, corpus)", file=sys.stderr, flush=True)
            run_once(model, steps, "keep", work)
            runs: dict[str, list[dict]] = {"keep": [], "default": []}
            for i in range(pairs):
                for heap in ("keep", "default"):
                    r = run_once(model, steps, heap, work)
                    runs[heap].append(r)
                    print(f"{model} pair {i + 1}/{pairs} heap={heap}: {r['tokens_per_s']:,.0f} tokens/s, "
                          f"{r['minflt_per_step']:,.0f} faults/step", file=sys.stderr, flush=True)
            med = {h: {k: statistics.median(r[k] for r in rs) for k in ("tokens_per_s", "minflt_per_step",
                                                                          "sys_s", "peak_rss_mib", "wall_s")}
                   for h, rs in runs.items()}
            ratios = [a["tokens_per_s"] / b["tokens_per_s"] for a, b in zip(runs["keep"], runs["default"])]
            rows.append((model, steps, med, ratios, runs["keep"][0]["heap"]))
    command = "python " + " ".join(shlex.quote(a) for a in ["experiments/bench_heap.py", *sys.argv[1:]])
    lines = [f"# heap=keep against glibc's defaults ({time.strftime('%Y-%m-%d %H:%M')})", "",
             *header_lines(machine, command),
             "- each run: `python -m scratchllm.train model=… trainer.max_steps=N compile=true validate=false "
             "sample.max_new_tokens=0 heap=keep|default`, fresh process, warm compile cache, pairs alternating; "
             "medians (faults / step: the whole process's minor page faults ÷ steps, start-up included)", "",
             "| model | steps | heap | tokens/s | minor faults / step | system CPU s | peak RSS MiB | wall s |",
             "|---|---:|---|---:|---:|---:|---:|---:|"]
    for model, steps, med, ratios, resolved in rows:
        for heap in ("keep", "default"):
            m = med[heap]
            lines.append(f"| {model} | {steps} | {heap} | {m['tokens_per_s']:,.0f} | {m['minflt_per_step']:,.0f} | "
                         f"{m['sys_s']:.1f} | {m['peak_rss_mib']:,.0f} | {m['wall_s']:.1f} |")
        lines.append(f"| {model} | | keep / default | **{statistics.median(ratios):.2f}×** (pairs "
                     f"{min(ratios):.2f}–{max(ratios):.2f}) | | | | |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
