"""Same quality, faster: train one model the same way under several speed settings and compare validation loss.

A faster configuration only counts if it learns the same model: same seed, data order, batch and number of
tokens, and a validation loss within ``--tolerance`` (the issue: 0.02) of the eager fp32 reference. Each
configuration is a full ``python -m scratchllm.train`` run in its own process; the figures come from its
result.json (``train_seconds`` counts compile time and excludes validation).

    python experiments/bench/parity.py                       # micro, 400 steps, batch 12 × 256: eager fp32 vs auto
    python experiments/bench/parity.py --steps 20 --tag quick

Writes experiments/results/parity_<date>[_<tag>].{md,csv} with the machine, versions and this command.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import shlex
import sys
import tempfile
from pathlib import Path

if __name__ == "__main__":  # run as a script: make `bench` importable, drop this folder from the path
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.machine import REPO, header_lines, machine_info
from bench.train_subprocess import train_in_subprocess

RESULTS = REPO / "experiments" / "results"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"

# name → overrides. The reference comes first; the others are what the suite found fastest on CPU.
CONFIGS = {
    "eager fp32 (reference)": ["precision=32-true", "compile=false", "model.attention=sdpa", "optim.fused=false"],
    "bf16-mixed eager": ["precision=bf16-mixed", "compile=false", "model.attention=sdpa", "optim.fused=true"],
    "bf16-mixed + compile + explicit attention + fused AdamW": [
        "precision=bf16-mixed", "compile=true", "model.attention=explicit", "optim.fused=true"],
    # what a default run picks on this machine (training/auto.py); compile_min_steps=1 so that a 400-step
    # parity run is treated like the long runs auto compiles (it would stay eager under 1,000 steps)
    "auto defaults": ["precision=auto", "compile=auto", "model.attention=auto", "compile_min_steps=1"],
}


FIRST, AUTO = list(CONFIGS)[0], "auto defaults"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="micro")
    p.add_argument("--batch", type=int, default=12)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the tinyshakespeare file")
    p.add_argument("--tolerance", type=float, default=0.02)
    p.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=[FIRST, AUTO],
                   help="default: the reference and the auto defaults")
    p.add_argument("--tag", default=None)
    p.add_argument("--out", type=Path, default=RESULTS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    if not args.data.is_file():
        raise SystemExit(f"{args.data} not found; pass --data <path to tinyshakespeare.txt>")
    common = [
        f"model={args.model}", "data=tinyshakespeare", f"data.path={args.data}", f"data.batch_size={args.batch}",
        f"trainer.max_steps={args.steps}", f"trainer.val_check_interval={args.steps}", "validate=false",
        "sample.max_new_tokens=0", "~logger", "callbacks.model_checkpoint=null", "callbacks.progress_bar=null",
    ]
    rows = []
    with tempfile.TemporaryDirectory(prefix="parity_") as tmp:
        for i, name in enumerate(args.configs):
            print(f"[{i + 1}/{len(args.configs)}] {name} …", file=sys.stderr, flush=True)
            result = train_in_subprocess(common + CONFIGS[name], Path(tmp) / f"run{i}")
            val = result["curve"][-1]["val_loss"]
            rows.append({"config": name, "overrides": " ".join(CONFIGS[name]), "tokens": result["tokens_seen"],
                         "train_seconds": result["train_seconds"], "val_loss": val,
                         "tokens_per_s": result["tokens_seen"] / result["train_seconds"],
                         "resolved": " ".join(f"{k}={v}" for k, v in result["fast_path"].items())})
    ref = rows[0]
    machine = machine_info("cpu")
    argv_used = sys.argv[1:] if argv is None else argv
    command = "python " + " ".join(shlex.quote(a) for a in ["experiments/bench/parity.py", *argv_used])
    lines = [
        f"# Same-quality check: {args.model}, batch {args.batch}, {args.steps} steps",
        "",
        *header_lines(machine, command),
        f"- common overrides: `{' '.join(common[:5])}` (seed 1337: same init and data order in every run)",
        "- train s: training wall time, validation excluded, compile included (with the machine's Inductor "
        "cache); tokens/s = tokens / train s (the steady-state figures are the benchmark suite's)",
        "",
        "| configuration | overrides | tokens | train s | tokens/s | speed-up | val loss | Δ vs reference |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        delta = r["val_loss"] - ref["val_loss"]
        r["delta"] = delta
        lines.append(f"| {r['config']} | `{r['overrides']}` | {r['tokens']:,} | {r['train_seconds']:.1f} | "
                     f"{r['tokens_per_s']:,.0f} | {r['tokens_per_s'] / ref['tokens_per_s']:.2f}× | "
                     f"{r['val_loss']:.4f} | {delta:+.4f} |")
    lines.append("")
    lines += [f"- {r['config']} ran with: `{r['resolved']}`" for r in rows]
    for r in rows[1:]:
        ok = abs(r["delta"]) <= args.tolerance
        lines.append(f"- {r['config']}: |Δ val loss| = {abs(r['delta']):.4f} (≤ {args.tolerance}) → "
                     f"{'same quality' if ok else 'NOT the same quality'}")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"parity_{dt.date.today():%Y-%m-%d}" + (f"_{args.tag}" if args.tag else "")
    (args.out / f"{stem}.md").write_text(text)
    with open(args.out / f"{stem}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) + ["command"])
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "command": command})
    return args.out / f"{stem}.md"


if __name__ == "__main__":
    main()
