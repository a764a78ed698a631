"""One ``python -m scratchllm.train`` run in its own process, for the scripts that compare whole training runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.machine import REPO


def train_in_subprocess(overrides: list[str], run_dir: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Train with ``overrides`` into ``run_dir`` and return its result.json; a failed run stops the script with
    the run's last output."""
    cmd = [sys.executable, "-m", "scratchllm.train", *overrides, f"hydra.run.dir={run_dir}"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"training failed ({' '.join(overrides)}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return json.loads((Path(run_dir) / "result.json").read_text())
