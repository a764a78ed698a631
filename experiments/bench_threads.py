"""Training steps/s and decode tokens/s with and without a competing busy process, before and after threads=auto.

Why: torch's OpenMP threads spin-wait between parallel regions. When another process keeps a core busy, a 2-thread
run waits for a thread the OS has not scheduled, and its spinning steals the core the other process wanted. The
fix (scratchllm.threads): ``threads=auto`` uses only the cores that are free at start. This script measures, side
by side in one run, alternating configurations:

- ``before``: the code as it was before the fix (a ``git archive`` of ``--before``, default 61080db: torch's
  default threads);
- ``after``: the current code with its defaults (``threads=auto``);
- two alternatives measured for the record: ``threads=auto`` with a passive OpenMP wait policy, and 2 threads
  with the passive policy (what a passive policy alone does beside a busy core);

each in two conditions: ``idle`` and ``busy`` (a pure-Python busy loop on one core, started before and killed after
each command). Training: ``python -m scratchllm.train`` (nano, char, fp32, eager) for ``--steps`` steps, no
validation, steps/s from result.json's training seconds. Decoding: ``python -m scratchllm.generate`` on a nano
checkpoint trained first (20 steps, by each version), ``--tokens`` new tokens, tokens/s from its stderr line.

    .venv/bin/python experiments/bench_threads.py                # ~8 min on 2 cores; run on an idle machine
    .venv/bin/python experiments/bench_threads.py --quick        # one repeat, fewer steps (a smoke run)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from experiments.bench.machine import header_lines, machine_info  # noqa: E402

PYTHON = sys.executable


def _env(src: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT") and not k.startswith("SCRATCHLLM_")}
    env["PYTHONPATH"] = str(src)
    env["SCRATCHLLM_CONF"] = str(src.parent / "conf")
    return {**env, **extra}


def _busy() -> subprocess.Popen:
    return subprocess.Popen([PYTHON, "-c", "while True: pass"])


def _train(src: Path, cwd: Path, steps: int, extra: list[str], env: dict[str, str] | None = None) -> float:
    """Steps per second of training (validation and sample off)."""
    run = cwd / f"run-{time.time_ns()}"
    # precision and compile named: the defaults became `auto` after this benchmark's figures (bf16 + compiled on an
    # AMX CPU), and both versions must train the same fp32 eager step to compare their threads
    cmd = [PYTHON, "-m", "scratchllm.train", f"trainer.max_steps={steps}", f"trainer.val_check_interval={steps}",
           "trainer.limit_val_batches=0", "validate=false", "sample.max_new_tokens=0", f"hydra.run.dir={run}",
           "precision=32-true", "compile=false", *extra]
    proc = subprocess.run(cmd, cwd=cwd, env=_env(src, env or {}), capture_output=True, text=True, timeout=1200)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    result = json.loads((run / "result.json").read_text())
    return steps / float(result["train_seconds"])


def _decode(src: Path, cwd: Path, ckpt: Path, tokens: int, extra: list[str], env: dict[str, str]) -> float:
    cmd = [PYTHON, "-m", "scratchllm.generate", f"ckpt_path={ckpt}", f"max_new_tokens={tokens}", "prompt=ROMEO:",
           "seed=1", "temperature=0", *extra]
    proc = subprocess.run(cmd, cwd=cwd, env=_env(src, env), capture_output=True, text=True, timeout=600)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    match = re.search(r"in [\d.]+ s: ([\d.]+) tokens/s", proc.stderr)
    if not match:
        raise RuntimeError(f"no tokens/s line in: {proc.stderr[-500:]}")
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="61080db", help="the commit before the fix")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(REPO / "experiments" / "results"))
    args = parser.parse_args()
    if args.quick:
        args.steps, args.tokens, args.repeats = 10, 50, 1

    work = Path(tempfile.mkdtemp(prefix="bench_threads_"))
    before = work / "before"
    before.mkdir()
    archive = subprocess.run(["git", "archive", args.before, "src", "conf"], cwd=REPO, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(before)], input=archive.stdout, check=True)
    # (source, overrides, environment)
    configs = {
        "before (torch's default threads)": (before / "src", [], {}),
        "after (threads=auto, the default)": (REPO / "src", [], {}),
        "after, threads=auto + OMP_WAIT_POLICY=PASSIVE (rejected)": (REPO / "src", [], {"OMP_WAIT_POLICY": "PASSIVE"}),
        "after, threads=2 + OMP_WAIT_POLICY=PASSIVE": (REPO / "src", ["threads=2"], {"OMP_WAIT_POLICY": "PASSIVE"}),
    }
    # a nano checkpoint for the decode runs, one per version (the same seed and steps; an older version cannot
    # read a newer checkpoint's model config)
    ckpts: dict[Path, Path] = {}
    for src, _, _ in configs.values():
        if src not in ckpts:
            ckpt_dir = work / f"ckpt-{len(ckpts)}"
            ckpt_dir.mkdir()
            _train(src, ckpt_dir, 20, [])
            ckpts[src] = next(ckpt_dir.glob("run-*/checkpoints/last.ckpt"))

    machine = machine_info("cpu")
    rows: dict[tuple[str, str], dict[str, list[float]]] = {}
    for repeat in range(args.repeats):
        for condition in ("idle", "busy"):
            for name, (src, extra, env) in configs.items():
                spinner = _busy() if condition == "busy" else None
                try:
                    if spinner:
                        time.sleep(0.5)
                    train = _train(src, work, args.steps, extra, env)
                    decode = _decode(src, work, ckpts[src], args.tokens, extra, env)
                finally:
                    if spinner:
                        spinner.kill()
                        spinner.wait()
                cell = rows.setdefault((condition, name), {"train": [], "decode": []})
                cell["train"].append(train)
                cell["decode"].append(decode)
                print(f"[{repeat + 1}/{args.repeats}] {condition:4} {name}: {train:.2f} steps/s, "
                      f"{decode:.1f} tokens/s", flush=True)

    command = "python experiments/bench_threads.py" + (" --quick" if args.quick else "")
    lines = [f"# Threads under contention ({dt.date.today().isoformat()})", "", *header_lines(machine, command),
             f"- training: default model (nano, char), {args.steps} steps, no validation; decode: nano checkpoint, "
             f"{args.tokens} new tokens, greedy; busy = one pure-Python busy loop on one core; median of "
             f"{args.repeats} alternating repeats", "",
             "| condition | configuration | training steps/s | decode tokens/s |", "|---|---|---:|---:|"]
    for (condition, name), cell in rows.items():
        lines.append(f"| {condition} | {name} | {statistics.median(cell['train']):.2f} | "
                     f"{statistics.median(cell['decode']):.1f} |")
    base = {c: rows[(c, next(iter(configs)))] for c in ("idle", "busy")}
    after = {c: rows[(c, list(configs)[1])] for c in ("idle", "busy")}
    lines += ["", "after ÷ before (median):"]
    for c in ("idle", "busy"):
        t = statistics.median(after[c]["train"]) / statistics.median(base[c]["train"])
        d = statistics.median(after[c]["decode"]) / statistics.median(base[c]["decode"])
        lines.append(f"- {c}: training {t:.2f}×, decode {d:.2f}×")
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"threads_{dt.date.today().isoformat()}{'_quick' if args.quick else ''}.md"
    (out / name).write_text(text)
    print(f"written {out / name}")


if __name__ == "__main__":
    main()
