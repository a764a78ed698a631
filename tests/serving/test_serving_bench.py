"""The load test (experiments/bench_serve.py) smoke-run at a tiny size: it finishes, with no errors, and reports."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.serving import serving_fixtures  # noqa: F401 - puts experiments/ on the path

pytestmark = pytest.mark.slow


def test_bench_serve_smoke(tiny_ckpt: Path, tmp_path: Path) -> None:
    import bench_serve

    out = bench_serve.main(["--ckpt", str(tiny_ckpt), "--clients", "3", "--seconds", "2", "--max-tokens", "8",
                            "--out", str(tmp_path / "serve.md")])
    report = out.read_text()
    assert "| requests / errors |" in report and " / 0 |" in report
    requests = int(report.split("| requests / errors | ")[1].split(" /")[0])
    assert requests >= 3
    tokens = int(report.split("| tokens generated | ")[1].split(" |")[0].replace(",", ""))
    assert "| tokens/s (all clients) |" in report
    assert tokens == 8 * requests  # a random model never writes end-of-text here: every request runs its budget
    assert "`python experiments/bench_serve.py --ckpt" in report
    assert "time to first token p50 / p95" in report
