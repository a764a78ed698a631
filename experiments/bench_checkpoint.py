"""What the checkpoint digest costs: save and load of a gpt2-124m training checkpoint with and without it.

The checkpoint is what training writes (issue #13): Lightning's dict with the model's ``state_dict`` and AdamW's
state after one step (exp_avg, exp_avg_sq), all fp32 on the CPU from a random init — about 1.5 GB. Timed, in
alternating order over several repeats:

- ``torch.save`` / ``torch.load(weights_only=True)`` straight to/from a file (Lightning's own IO, without its
  temporary-file move);
- ``scratchllm.checkpoint.save`` (digest, temporary file beside the target, fsync, rename, fsync of the folder)
  and ``scratchllm.checkpoint.load`` (reads, then recomputes and compares the digest);
- ``scratchllm.checkpoint.digest`` alone: the hashing both of those add.

The acceptance line of #13: the hashing costs at most 10% of the save time. Reads after a save come from the page
cache (the file was just written), as they do when a run resumes soon after its save.

    .venv/bin/python experiments/bench_checkpoint.py           # gpt2-124m, 5 repeats: ~1.5 GB files, ~5 GB free
    .venv/bin/python experiments/bench_checkpoint.py --quick   # nano, 3 repeats: a smoke test (seconds)

Results go to ``experiments/results/checkpoint_<date>[_quick].md`` with the machine line and the command. Run it
on an idle machine: other work sharing the cores or the disk makes the numbers noise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from bench.machine import header_lines, machine_info  # experiments/ is on the path: this file runs as a script
from scratchllm import checkpoint
from scratchllm.model import GPT, load_preset
from scratchllm.training.optim import build_adamw

RESULTS = Path(__file__).resolve().parent / "results"


def training_checkpoint(preset: str) -> dict[str, Any]:
    """A checkpoint shaped like Lightning's for ``preset``: weights and AdamW state after one step."""
    torch.manual_seed(0)
    model = GPT(load_preset(preset))
    optimizer = build_adamw(model, lr=1e-3)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    optimizer.step()
    model.zero_grad(set_to_none=True)  # a checkpoint holds no gradients
    return {"epoch": 0, "global_step": 1, "pytorch-lightning_version": "2.6",
            "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
            "optimizer_states": [optimizer.state_dict()], "lr_schedulers": [{"last_epoch": 1}],
            "hyper_parameters": {"model": model.config.to_dict()}}


def filesystem(path: Path) -> str:
    """The type and device of the filesystem holding ``path`` (fsync's cost depends on it)."""
    best = ("?", "?", "")
    for line in Path("/proc/mounts").read_text().splitlines() if Path("/proc/mounts").is_file() else []:
        device, mount, kind = line.split()[:3]
        if str(path.resolve()).startswith(mount.rstrip("/") + "/") and len(mount) >= len(best[2]):
            best = (kind, device, mount)
    return f"{best[0]} ({best[1]} at {best[2] or '?'})"


def measure(ckpt: dict[str, Any], folder: Path, repeats: int) -> dict[str, list[float]]:
    plain, ours = folder / "plain.ckpt", folder / "ours.ckpt"
    cases: dict[str, Callable[[], Any]] = {
        "save: torch.save": lambda: torch.save(ckpt, plain),
        "save: checkpoint.save": lambda: checkpoint.save(ckpt, ours),
        "digest alone": lambda: checkpoint.digest(ckpt),
        "load: torch.load": lambda: torch.load(plain, map_location="cpu", weights_only=True),
        "load: checkpoint.load": lambda: checkpoint.load(ours),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    # the two saves and the two loads swap places every other repeat: a slow spell of the machine (or a warm
    # page cache) does not fall on one side only
    swapped = [names[1], names[0], names[2], names[4], names[3]]
    for r in range(repeats):
        for name in (names if r % 2 == 0 else swapped):
            start = time.perf_counter()
            result = cases[name]()
            times[name].append(time.perf_counter() - start)
            del result  # a loaded checkpoint is freed before the next case runs
        print(f"repeat {r + 1}/{repeats}: " + ", ".join(f"{n} {times[n][-1]:.2f}s" for n in cases), file=sys.stderr)
    return times


def report(times: dict[str, list[float]], size: int, preset: str, folder: Path, command: str) -> str:
    med = {name: statistics.median(values) for name, values in times.items()}
    lines = [f"# Checkpoint save/load with and without the digest ({dt.datetime.now():%Y-%m-%d %H:%M})", "",
             *header_lines(machine_info("cpu"), command),
             f"- checkpoint: {preset} weights + AdamW state, fp32, {size / 2**30:.2f} GiB; written to "
             f"{folder} on {filesystem(folder)}; {len(next(iter(times.values())))} repeats, alternating order", "",
             "| operation | median s | min s | max s | GB/s (median) |", "|---|---:|---:|---:|---:|"]
    for name, values in times.items():
        lines.append(f"| {name} | {med[name]:.3f} | {min(values):.3f} | {max(values):.3f} | "
                     f"{size / med[name] / 1e9:.2f} |")
    digest = med["digest alone"]
    lines += ["",
              f"- hashing: {digest:.3f} s = {100 * digest / med['save: checkpoint.save']:.1f}% of checkpoint.save "
              f"(acceptance: ≤ 10%), {100 * digest / med['load: checkpoint.load']:.1f}% of checkpoint.load",
              f"- checkpoint.save vs torch.save: {med['save: checkpoint.save'] / med['save: torch.save']:.2f}× "
              f"(digest + fsync of the file and folder + rename); checkpoint.load vs torch.load: "
              f"{med['load: checkpoint.load'] / med['load: torch.load']:.2f}×", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="nano model, 3 repeats: check the script works")
    parser.add_argument("--preset", default=None, help="model preset (default gpt2-124m; nano with --quick)")
    parser.add_argument("--repeats", type=int, default=None, help="default 5 (3 with --quick)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where the files are written (default: a new folder in the system temp folder)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    preset = args.preset or ("nano" if args.quick else "gpt2-124m")
    repeats = args.repeats or (3 if args.quick else 5)

    ckpt = training_checkpoint(preset)
    size = 3 * sum(t.numel() * t.element_size() for t in ckpt["state_dict"].values())  # weights + 2 moments
    folder = Path(tempfile.mkdtemp(prefix="bench_checkpoint_", dir=args.dir))
    try:
        free = shutil.disk_usage(folder).free
        if free < 3.5 * size:  # plain + ours + ours' temporary during a save, with a margin
            sys.exit(f"error: {folder} has {free / 2**30:.1f} GiB free; the benchmark needs about "
                     f"{3.5 * size / 2**30:.1f} GiB there; pass --dir <folder on a larger disk>")
        times = measure(ckpt, folder, repeats)
        size = (folder / "plain.ckpt").stat().st_size
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    command = "python " + " ".join(shlex.quote(a) for a in ["experiments/bench_checkpoint.py", *sys.argv[1:]])
    text = report(times, size, preset, folder, command)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"checkpoint_{dt.date.today():%Y-%m-%d}{'_quick' if args.quick else ''}.md"
    path.write_text(text)
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
