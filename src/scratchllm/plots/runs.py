"""Finding training runs and reading their curves: TensorBoard event files first, ``result.json`` as the fallback.

A run folder is what ``python -m scratchllm.train`` writes (``tensorboard/``, ``result.json``, ``.hydra/``). The
``run`` argument of ``scratchllm.plot`` may name one, several, a multirun folder (its numbered jobs), a parent
such as ``logs/`` (every run below it) or a glob. A sweep's runs are labelled by their overrides
(``model.norm=rmsnorm``), other runs by their folder name.
"""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from scratchllm.errors import DataError

Series = tuple[list[int], list[float]]  # steps, values


@dataclass
class RunCurves:
    name: str
    path: Path
    scalars: dict[str, Series] = field(default_factory=dict)  # tag -> (steps, values)
    source: str = "tensorboard"


def is_run(folder: Path) -> bool:
    return (folder / "result.json").is_file() or (folder / "tensorboard").is_dir()


def find_runs(specs: str | Sequence[str]) -> list[Path]:
    """Run folders named by ``specs`` (folders, parents of runs, globs), in name order, each once."""
    specs = [specs] if isinstance(specs, str) else list(specs)
    found: list[Path] = []
    for spec in specs:
        matches = sorted(glob.glob(str(Path(spec).expanduser()), recursive=True)) or [spec]
        for match in map(Path, matches):
            if not match.exists():
                raise DataError(f"run={spec}: no such folder; pass a run folder (logs/train/runs/<time>), a multirun "
                                f"folder, logs/ or a glob")
            if is_run(match):
                found.append(match)
            else:
                found += sorted({p.parent for p in match.rglob("result.json")} |
                                {p.parent for p in match.rglob("tensorboard") if p.is_dir()})
    runs = list(dict.fromkeys(p.resolve() for p in found))
    if not runs:
        raise DataError(f"run={list(specs)} holds no training runs (folders with result.json or tensorboard/); train "
                        f"one with python -m scratchllm.train")
    return runs


def run_label(run: Path) -> str:
    """The overrides that made this run (what tells a sweep's runs apart), else its folder name."""
    overrides = run / ".hydra" / "overrides.yaml"
    if overrides.is_file():
        lines = [line[2:].strip() for line in overrides.read_text().splitlines() if line.startswith("- ")]
        varied = [o for o in lines if not o.startswith(("trainer.max_steps", "trainer.val_check_interval"))]
        if varied and run.parent.name != "runs":
            return " ".join(varied)
    return run.name


def read_curves(run: Path, tags: Sequence[str]) -> RunCurves:
    """The scalar series ``tags`` of one run: from its TensorBoard events when it has them, else result.json's
    validation curve (``val/loss`` only)."""
    curves = RunCurves(run_label(run), run)
    events = run / "tensorboard"
    if events.is_dir() and any(events.glob("events.out.tfevents.*")):
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})  # 0 = keep every point
        acc.Reload()
        known = set(acc.Tags()["scalars"])
        for tag in tags:
            if tag in known:
                points = acc.Scalars(tag)
                curves.scalars[tag] = ([p.step for p in points], [p.value for p in points])
        if curves.scalars:
            return curves
    result = run / "result.json"
    if result.is_file() and "val/loss" in tags:
        curve = json.loads(result.read_text()).get("curve") or []
        curves.source = "result.json"
        curves.scalars["val/loss"] = ([int(p["step"]) for p in curve], [float(p["val_loss"]) for p in curve])
    return curves
