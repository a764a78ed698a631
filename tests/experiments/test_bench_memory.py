"""bench_memory: the same-shape warm-up puts the runtime's per-shape code in the baseline and reports it apart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "experiments"))

import bench_memory  # noqa: E402


def test_a_shapes_row_reports_runtime_and_the_host_table_shows_both_errors(tmp_path):
    prefix = tmp_path / "host"
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(REPO / "experiments" / "bench_memory.py"), "--warmup", "shapes",
                          "--rows", "nano:32:32-true:none", "--raw", f"{prefix}_mmap.json", "--out", os.devnull],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    raw = json.loads(Path(f"{prefix}_mmap.json").read_text())
    row, = raw["rows"]
    assert row["warmup"] == "shapes" and 0 <= row["runtime"] < 64 * bench_memory.MB
    predicted = bench_memory.predicted("nano", 32, "none", "32-true")["total"]
    assert abs(predicted / row["measured"] - 1) < 0.15  # fp32: live tensors, the model's own claim
    assert "MALLOC_MMAP_THRESHOLD_=65536" in raw["machine"]["command"]
    table = bench_memory.host_report(str(prefix))
    line = next(x for x in table.splitlines() if x.startswith("| nano"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    mb = bench_memory.MB
    assert cells[6] == f"{row['measured'] / mb:,.1f}" and cells[8] == f"{row['runtime'] / mb:,.1f}"
    assert cells[10] == "–"  # no glibc-default run for this prefix
