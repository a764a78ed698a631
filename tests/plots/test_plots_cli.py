"""``python -m scratchllm.plot`` run the way the README writes it, in a fresh folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tests.plots.conftest import png_size

pytestmark = pytest.mark.slow


def plot(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scratchllm.plot", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=180)


def test_every_plot_from_the_command_line(sweep: Path, trained_run: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    done = plot(work, f"run={sweep}")
    assert done.returncode == 0, done.stderr
    assert png_size(work / "plots" / "loss.png") == (1100, 420)
    assert "2 run(s): model.norm=layernorm (tensorboard), model.norm=rmsnorm (tensorboard)" in done.stderr
    for what, size in (("attention", (60 + 220 * 4, 60 + 220 * 2)), ("positions", (1200, 500)),
                       ("tokens", (800, 500))):
        done = plot(work, f"what={what}", f"run={trained_run}", "prompt=ROMEO: But soft", f"out={what}.png")
        assert done.returncode == 0, done.stderr
        assert png_size(work / f"{what}.png") == size and "tiny-rope" in done.stderr
    done = plot(work, "what=positions", f"run={trained_run}", "width=640", "height=320", "out=small.png")
    assert done.returncode == 0 and png_size(work / "small.png") == (640, 320)


def test_mistakes_are_one_line(tmp_path: Path) -> None:
    for args, message in ((["what=heatmap"], "what='heatmap' is not a plot; choose one of: loss, attention"),
                          (["wat=loss"], "did you mean what=loss"),
                          ([f"run={tmp_path / 'missing'}"], "no such folder"),
                          (["width=10"], "width is in pixels")):
        done = plot(tmp_path, *args)
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
