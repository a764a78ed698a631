"""bench_memory: the same-shape warm-up puts the runtime's per-shape code in the baseline and reports it apart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "experiments"))

import bench_memory  # noqa: E402


@pytest.mark.slow  # three Lightning fits in a child process
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="peak RSS is read from Linux's /proc")
def test_a_shapes_row_reports_runtime_and_the_host_table_shows_both_errors(tmp_path):
    prefix = tmp_path / "host"
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(REPO / "experiments" / "bench_memory.py"), "--warmup", "shapes",
                          "--rows", "nano:32:32-true:none", "--raw", f"{prefix}_mmap.json", "--out", os.devnull],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    raw = json.loads(Path(f"{prefix}_mmap.json").read_text())
    row, = raw["rows"]
    # an RSS difference: near zero it may dip below (pages the trim gave back)
    assert row["warmup"] == "shapes" and -4 * bench_memory.MB < row["runtime"] < 64 * bench_memory.MB
    predicted = bench_memory.predicted("nano", 32, "none", "32-true")["total"]
    assert abs(predicted / row["measured"] - 1) < 0.15  # fp32: live tensors, the model's own claim
    assert raw["machine"]["command"].startswith("MALLOC_MMAP_THRESHOLD_=65536 .venv/bin/python ")
    table = bench_memory.host_report(str(prefix))
    line = next(x for x in table.splitlines() if x.startswith("| nano"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    mb = bench_memory.MB
    assert cells[6] == f"{row['measured'] / mb:,.1f}" and cells[8] == f"{row['runtime'] / mb:,.1f}"
    assert cells[10] == "–"  # no glibc-default run for this prefix


def test_rows_from_a_stopped_runs_log_keep_the_runtime(tmp_path):
    log = tmp_path / "run.log"
    log.write_text("nano       b=32  bf16-mixed ckpt=none measured     55.7 MB (0.6s, runtime 9.3 MB)\n"
                   "nano       b=32  32-true    ckpt=full measured     35.6 MB (1.1s)\nnot a row\n")
    shapes, tiny = bench_memory.rows_from_log(str(log))
    assert (shapes["precision"], shapes["checkpointing"]) == ("bf16-mixed", "none")
    assert shapes["measured"] == 55.7 * bench_memory.MB and shapes["runtime"] == 9.3 * bench_memory.MB
    assert tiny["measured"] == 35.6 * bench_memory.MB and "runtime" not in tiny
