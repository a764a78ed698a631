"""A plain (non-editable) install carries the Hydra configs: build the wheel, install it into a fresh folder and
train a few steps from a folder outside the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_wheel_carries_conf_and_trains_outside_the_repo(tmp_path):
    # Build from a copy so the checkout gets no build/ folder; conf/ reaches the package through the
    # src/scratchllm/conf symlink, which the copy keeps (relative) and setuptools follows.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "conf", "src"):
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy2
        copy(REPO / name, source / name, **({"symlinks": True} if copy is shutil.copytree else {}))
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
         str(source)], capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(wheels.glob("scratchllm-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for config in ("train.yaml", "generate.yaml", "prepare.yaml", "model/nano.yaml", "paths/default.yaml"):
        assert f"scratchllm/conf/{config}" in names, config

    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stderr[-2000:]

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("SCRATCHLLM_CONF", "SCRATCHLLM_ROOT")}
    env["PYTHONPATH"] = str(site)  # ahead of the editable checkout on sys.path
    where = subprocess.run(
        [sys.executable, "-c", "import scratchllm.paths as p; print(p.__file__); print(p.config_dir())"],
        cwd=outside, env=env, capture_output=True, text=True, timeout=120,
    )
    assert where.returncode == 0, where.stderr
    module_file, conf = where.stdout.split()
    assert module_file.startswith(str(site)) and conf == str(site / "scratchllm" / "conf")

    run = subprocess.run(
        [sys.executable, "-m", "scratchllm.train", "trainer.max_steps=3", "trainer.val_check_interval=3",
         "data.max_val_windows=8", "sample.max_new_tokens=8"],
        cwd=outside, env=env, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "result:" in run.stdout
    assert list((outside / "logs" / "train" / "runs").glob("*/checkpoints/last.ckpt"))
