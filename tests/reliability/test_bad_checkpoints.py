"""A disk that fills up during a save, and checkpoints cut short, given to the real entry points: one line naming
the file (exit 2), the last good checkpoint kept and resumable (issue #13).

Flipped bytes inside a tensor (a checkpoint that still unpickles) are
tests/test_checkpoint.py::test_corrupt_checkpoint_in_generate_and_resume_is_one_line."""

from __future__ import annotations

import errno
import io
import re
import shutil
from pathlib import Path

import pytest
import torch

from scratchllm import checkpoint
from scratchllm.errors import CheckpointError
from tests.reliability.conftest import (
    assert_same_end, finished_run, generate, one_line_error, run_folders, temporaries, tmpfs, train,
)


def test_a_full_disk_inside_torch_save_is_a_checkpoint_error(tmp_path: Path, monkeypatch):
    """No mount needed: a file that refuses writes past 64 KiB with ENOSPC, as a full disk does. torch.save does
    not pass that OSError on: it raises RuntimeError('unexpected pos …') with the OSError as its context."""
    path = tmp_path / "last.ckpt"
    checkpoint.save({"state_dict": {"w": torch.ones(10)}}, path)
    before = path.read_bytes()

    class FullDisk(io.FileIO):
        def write(self, data) -> int:
            if self.tell() + len(data) > 65536:
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write(data)

    monkeypatch.setattr(checkpoint, "open", lambda file, mode: io.BufferedWriter(FullDisk(file, mode)),
                        raising=False)
    with pytest.raises(CheckpointError, match=r"no space left on the device to save .*last\.ckpt: it needs about "
                                              r"0\.4 MB"):
        checkpoint.save({"state_dict": {"w": torch.ones(100_000)}}, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


@pytest.mark.slow
def test_disk_full_during_training_keeps_the_last_good_checkpoint(user_folder: Path, tmp_path: Path, reference):
    """Logs on a disk with room for 2.5 checkpoints: the two saves at step 4 fit, the first one at step 8 does not."""
    size = reference.last.stat().st_size
    with tmpfs(tmp_path / "small_disk", f"{size * 5 // 2 // 1024}k") as logs:
        line = one_line_error(train(user_folder, f"paths.log_dir={logs}"))
        [run] = run_folders(logs)
        saved = run / "checkpoints"
        match = re.search(rf"no space left on the device to save {re.escape(str(saved))}/\S+\.ckpt: it needs about "
                          r"([\d.]+) MB; free space there or point paths\.log_dir at a larger disk", line)
        assert match, line
        assert float(match.group(1)) == pytest.approx(size / 2**20, rel=0.05)
        # the partial file is gone; what is left is the step-4 pair, whole (digest verified)
        assert not temporaries(logs)
        names = sorted(p.name for p in saved.iterdir())
        assert names[0] == "last.ckpt" and re.fullmatch(r"step000004-val[\d.]+\.ckpt", names[1]) and len(names) == 2
        assert checkpoint.load(saved / "last.ckpt")["global_step"] == 4
        # the user follows the message: logs to a larger disk, resume from that checkpoint
        resumed = train(user_folder, f"ckpt_path={saved / 'last.ckpt'}", f"paths.log_dir={user_folder / 'logs'}")
        assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_end(finished_run(user_folder / "logs"), reference.run)


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["cut in half", "0 bytes"])
def test_damaged_last_checkpoint_is_one_line_naming_it(user_folder: Path, reference, damage: str):
    run = user_folder / "logs" / "train" / "runs" / reference.run.name
    shutil.copytree(reference.run, run)
    last = run / "checkpoints" / "last.ckpt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2] if damage == "cut in half" else b"")
    for proc in (train(user_folder, "ckpt_path=last"), generate(user_folder)):  # generate's default: last
        line = one_line_error(proc)
        assert str(last) in line, line
        assert ("is empty (0 bytes" if damage == "0 bytes" else "is not a readable scratchllm checkpoint") in line


class _RunsCode:
    """Unpickling this calls ``open(marker, "w")``: what a hostile .ckpt would do with os.system."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


@pytest.mark.slow
def test_a_pickle_that_runs_code_is_refused_without_running_it(tmp_path: Path):
    marker, hostile = tmp_path / "code_ran", tmp_path / "hostile.ckpt"
    torch.save({"state_dict": {"model.w": torch.zeros(2)}, "payload": _RunsCode(marker)}, hostile)
    line = one_line_error(generate(tmp_path, f"ckpt_path={hostile}"))
    assert str(hostile) in line and "refuses to unpickle" in line, line
    assert not marker.exists()
