"""Time-to-quality: run a training recipe on the tinyshakespeare file and record validation loss against training time.

    python experiments/time_to_quality.py                                   # both recipes, ~17 min here
    python experiments/time_to_quality.py --recipes tinyshakespeare_char_quick --targets 1.88
    python experiments/time_to_quality.py --recipes tinyshakespeare_char --extra trainer.max_steps=700 --tag 5min

Each recipe is one ``python -m scratchllm.train experiment=<recipe>`` run in its own process. "Training time" is
the run's ``train_seconds``: wall-clock time spent training, validation excluded, compilation included (the
run says whether Inductor's cache was warm: a second run of the same recipe reuses it). Writes
experiments/results/time_to_quality_<date>[_<tag>].md with the curve, when each target was first reached, the
machine and this command.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import sys
import tempfile
from pathlib import Path

if __name__ == "__main__":  # run as a script: make `bench` importable, drop this folder from the path
    sys.path[0] = str(Path(__file__).resolve().parent)

from bench.machine import REPO, header_lines, machine_info
from bench.train_subprocess import train_in_subprocess

RESULTS = REPO / "experiments" / "results"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
# The targets: ≤ 1.88 in under 45 s (the quick recipe), ≤ 1.55 within 15 minutes (the full one).
TARGETS = {"tinyshakespeare_char_quick": (1.88, 45.0), "tinyshakespeare_char": (1.55, 900.0)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipes", nargs="+", default=list(TARGETS))
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the tinyshakespeare file")
    p.add_argument("--extra", nargs="*", default=[], help="more overrides for every run")
    p.add_argument("--cold", action="store_true",
                   help="compile from a fresh, empty Inductor cache (what a first run on a new machine pays)")
    p.add_argument("--tag", default=None)
    p.add_argument("--out", type=Path, default=RESULTS)
    return p.parse_args(argv)


def first_reaching(curve: list[dict], loss: float) -> dict | None:
    return next((point for point in curve if point["val_loss"] <= loss), None)


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    if not args.data.is_file():
        raise SystemExit(f"{args.data} not found; pass --data <path to tinyshakespeare.txt>")
    machine = machine_info("cpu")
    argv_used = sys.argv[1:] if argv is None else argv
    command = "python " + " ".join(shlex.quote(a) for a in ["experiments/time_to_quality.py", *argv_used])
    lines = [
        "# Time-to-quality on tinyshakespeare (character level)",
        "",
        *header_lines(machine, command),
        "- training s: wall-clock time spent training (validation excluded, compilation included)",
        "- Inductor cache: " + ("cold (a fresh, empty cache per run)" if args.cold else
                                "the machine's own (warm when the recipe has run here before)"),
    ]
    for recipe in args.recipes:
        overrides = [f"experiment={recipe}", f"data.path={args.data}", "sample.max_new_tokens=0", "validate=false",
                     *args.extra]
        print(f"{recipe} …", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="ttq_") as tmp:
            env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(Path(tmp) / "inductor")} if args.cold else None
            result = train_in_subprocess([*overrides, "~logger"], Path(tmp), env=env)
        curve = result.get("curve", [])
        lines += ["", f"## `python -m scratchllm.train {' '.join(overrides)}`", "",
                  f"{result['params']:,} parameters; {result['tokens_seen']:,} tokens in {result['train_seconds']:.1f} "
                  f"s of training ({result['fit_seconds']:.1f} s of fit with validation); best validation loss "
                  f"{min(p['val_loss'] for p in curve):.4f}", "",
                  "| step | tokens | training s | val loss |", "|---:|---:|---:|---:|"]
        lines += [f"| {p['step']} | {p['tokens_seen']:,} | {p['train_seconds']:.1f} | {p['val_loss']:.4f} |"
                  for p in curve]
        if recipe in TARGETS and not args.extra:  # --extra changes the recipe (e.g. a shorter budget)
            loss, seconds = TARGETS[recipe]
            hit = first_reaching(curve, loss)
            met = hit is not None and hit["train_seconds"] <= seconds
            where = f"first at step {hit['step']}, {hit['train_seconds']:.1f} s" if hit else "never reached"
            lines += ["", f"- target: val loss ≤ {loss} within {seconds:.0f} s of training: {where} → "
                          f"{'met' if met else 'NOT met'}"]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"time_to_quality_{dt.date.today():%Y-%m-%d}" + (f"_{args.tag}" if args.tag else "")
    (args.out / f"{stem}.md").write_text(text)
    return args.out / f"{stem}.md"


if __name__ == "__main__":
    main()
