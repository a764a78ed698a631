"""Fault injection on the real entry points: one tiny training setting, an uninterrupted reference run of it
shared by every test, and helpers to kill, damage, resume and compare.

Every run is ``python -m scratchllm.train`` (or the kill runner around it) in a fresh folder, as a user types it.
Each user folder starts with a copy of the reference's data cache (what a folder holds after a first training),
so the runs do not prepare the corpus again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch

from scratchllm import checkpoint
from tests.training.conftest import run_cli

RUNNER = Path(__file__).with_name("kill_runner.py")
# Checkpoints (and validations) at steps 4, 8 and 12. Dropout on, so a resume must also restore every random
# draw. One thread: matmul results may depend on how the work is split, and on a shared machine threads=auto
# picks a different count from run to run, which has nothing to do with resuming.
TINY = ["model=nano", "model.context_length=32", "model.dropout=0.1", "data.batch_size=8",
        "data.max_val_windows=8", "trainer.max_steps=12", "trainer.val_check_interval=4",
        "sample.max_new_tokens=0", "threads=1"]
# Saved by the training loop and restored on resume; must end equal. (The callbacks' state holds timings and run
# folder paths, which differ by design; its logged values are compared through result.json.)
EXACT_KEYS = ("state_dict", "optimizer_states", "lr_schedulers", "loops", "global_step", "epoch", "scratchllm",
              "ShardDataModule")


def train(cwd: Path, *overrides: str, tmpdir: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m scratchllm.train <TINY> <overrides>`` in ``cwd`` (``tmpdir``: the system temp folder it gets)."""
    return run_cli("-m", "scratchllm.train", *TINY, *overrides, cwd=cwd, env_extra=_tmp_env(tmpdir))


def train_killed(cwd: Path, moment: str, *overrides: str, tmpdir: Path | None = None) -> None:
    """The same training, killed with SIGKILL at ``moment`` (see kill_runner.py)."""
    proc = run_cli(str(RUNNER), moment, "--", *TINY, *overrides, cwd=cwd, env_extra=_tmp_env(tmpdir))
    assert proc.returncode == -9, f"not killed at {moment} (exit {proc.returncode}): {proc.stderr[-2000:]}"


def generate(cwd: Path, *overrides: str) -> subprocess.CompletedProcess:
    return run_cli("-m", "scratchllm.generate", "max_new_tokens=4", *overrides, cwd=cwd)


def _tmp_env(tmpdir: Path | None) -> dict[str, str]:
    return {"TMPDIR": str(tmpdir)} if tmpdir else {}


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The error line of a run that a user error stopped: exit 2, no traceback."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: "), proc.stderr[-3000:]
    return line


def run_folders(logs: Path) -> list[Path]:
    return sorted(p for p in (logs / "train" / "runs").iterdir() if p.is_dir())


def finished_run(logs: Path) -> Path:
    """The one run folder under ``logs`` that got to the end (wrote result.json)."""
    done = [p.parent for p in (logs / "train" / "runs").glob("*/result.json")]
    assert len(done) == 1, f"expected one finished run under {logs}, found {done}"
    return done[0]


def assert_equal(a: Any, b: Any, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {set(a) ^ set(b)}"
        for key in a:
            assert_equal(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_equal(x, y, f"{where}/{i}")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_end(run: Path, reference: Path) -> None:
    """``run`` ended bit-identical to ``reference``: every weight, optimizer moment, schedule, loop and data
    counter in last.ckpt, and every logged validation value (curve entries, final val_loss)."""
    got, want = (checkpoint.load(r / "checkpoints" / "last.ckpt") for r in (run, reference))  # digests verified
    for key in EXACT_KEYS:
        assert (key in got) == (key in want), key
        if key in want:
            assert_equal(got[key], want[key], key)
    got_result, want_result = (json.loads((r / "result.json").read_text()) for r in (run, reference))
    for key in ("global_step", "tokens_seen", "val_loss", "val_ppl"):
        assert got_result[key] == want_result[key], key
    assert _untimed(got_result["curve"]) == _untimed(want_result["curve"])
    assert len(want_result["curve"]) == 3  # validations at steps 4, 8, 12: the comparison covers all of them


def _untimed(curve: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in entry.items() if k != "train_seconds"} for entry in curve]


def files(folder: Path) -> list[Path]:
    """Every file under ``folder`` (empty folders aside: torch creates its inductor cache folder in TMPDIR)."""
    return sorted(p for p in folder.rglob("*") if p.is_file())


def temporaries(folder: Path) -> list[Path]:
    """Temporary files of checkpoint saves anywhere under ``folder`` (``.<name>.<id>.tmp``)."""
    return sorted(p for p in folder.rglob("*.tmp") if p.is_file())


@contextmanager
def tmpfs(mountpoint: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (mount's syntax: 256m, 24000k) at ``mountpoint``: another filesystem than the
    system temp folder, or a small disk. Skips unless running as root where mount works."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mountpoint.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mountpoint)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip() or proc.returncode}")
    try:
        yield mountpoint
    finally:
        if subprocess.run(["umount", str(mountpoint)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)


class Reference:
    """The uninterrupted run every resumed run must end identical to."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.run = finished_run(root / "logs")
        self.last = self.run / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    root = tmp_path_factory.mktemp("reference")
    proc = train(root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Reference(root)


@pytest.fixture
def user_folder(tmp_path: Path, reference: Reference) -> Path:
    """A fresh working folder with the corpus already prepared (a copy of the reference's data cache)."""
    folder = tmp_path / "user"
    shutil.copytree(reference.root / "data_cache", folder / "data_cache")
    return folder
