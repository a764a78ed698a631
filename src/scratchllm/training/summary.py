"""The few lines printed when a training run ends: how the validation loss went, how fast, and where the run is.

The full record is ``result.json`` and TensorBoard; this is what a person reads in the terminal before opening
either: a sparkline of the validation curve, a compact table of it (at most ``rows`` rows, evenly picked, the last
always shown), the best loss and where it was reached, tokens/s and the run folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float]) -> str:
    """One block character per value, scaled between the smallest and the largest (low loss = short bar)."""
    if not values:
        return ""
    lo, hi = min(values), max(values)
    span = hi - lo
    if span <= 0:
        return _BARS[0] * len(values)
    return "".join(_BARS[min(len(_BARS) - 1, int((v - lo) / span * len(_BARS)))] for v in values)


def _pick(n: int, rows: int) -> list[int]:
    """``rows`` indices spread evenly over ``range(n)``, first and last included."""
    if n <= rows:
        return list(range(n))
    return sorted({round(i * (n - 1) / (rows - 1)) for i in range(rows)})


def _where(folder: Path) -> str:
    """The run folder relative to the current directory when it is below it (shorter to read and to paste)."""
    try:
        return os.path.relpath(folder) if folder.resolve().is_relative_to(Path.cwd()) else str(folder)
    except ValueError:  # another drive
        return str(folder)


def run_summary(result: dict[str, Any], run_dir: Path, rows: int = 8) -> str:
    curve = result.get("curve") or []
    lines = ["----- run summary -----"]
    if curve:
        losses = [float(point["val_loss"]) for point in curve]
        best = min(range(len(curve)), key=lambda i: losses[i])
        lines.append(f"validation loss  {sparkline(losses)}  {losses[0]:.4f} → {losses[-1]:.4f}  "
                     f"(best {losses[best]:.4f} at step {curve[best]['step']})")
        lines.append(f"  {'step':>7} {'tokens':>11} {'train s':>8} {'val loss':>9}")
        for i in _pick(len(curve), rows):
            point = curve[i]
            lines.append(f"  {point['step']:>7,} {point['tokens_seen']:>11,} {point['train_seconds']:>8.1f} "
                         f"{point['val_loss']:>9.4f}")
    elif "val_loss" in result:
        lines.append(f"validation loss  {result['val_loss']:.4f}")
    if "val_loss" in result and curve and abs(float(result["val_loss"]) - float(curve[-1]["val_loss"])) > 1e-4:
        lines.append(f"final validation {result['val_loss']:.4f}")
    speed = []
    if "global_step" in result:
        speed.append(f"{result['global_step']:,} steps")
    if "tokens_seen" in result:
        speed.append(f"{result['tokens_seen']:,} tokens")
    if "train_seconds" in result:
        speed.append(f"{result['train_seconds']:.1f} s training")
    if result.get("tokens_per_s"):
        speed.append(f"{result['tokens_per_s']:,} tokens/s")
    if speed:
        lines.append(", ".join(speed))
    lines.append(f"run folder       {_where(run_dir)}  (tensorboard --logdir {_where(run_dir)})")
    if result.get("last_checkpoint"):
        lines.append(f"checkpoint       {_where(Path(result['last_checkpoint']))}")
    return "\n".join(lines)
