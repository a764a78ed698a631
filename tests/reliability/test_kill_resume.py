"""kill -9 at four moments of a real training, then ``ckpt_path=last`` as a user would: a bit-identical end to the
uninterrupted reference run, or a clean refusal when there is nothing to resume (issue #13)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from scratchllm import checkpoint
from tests.reliability.conftest import (
    assert_same_end, files, finished_run, one_line_error, run_folders, temporaries, tmpfs, train, train_killed,
)

pytestmark = pytest.mark.slow


def test_kill_before_the_first_checkpoint_leaves_nothing_to_resume(user_folder: Path, tmp_path: Path):
    system_tmp = tmp_path / "system_tmp"
    system_tmp.mkdir()
    train_killed(user_folder, "step:2", tmpdir=system_tmp)
    line = one_line_error(train(user_folder, "ckpt_path=last", tmpdir=system_tmp))
    assert "ckpt_path=last but no checkpoints/last.ckpt exists under" in line
    # nothing half-written: no checkpoint, no temporary file, here or in the system temp folder
    assert not list(user_folder.rglob("*.ckpt")) and not temporaries(user_folder)
    assert not files(system_tmp)


@pytest.mark.parametrize("killed_at, resumes_from", [(6, 4), (11, 8)], ids=["between-checkpoints", "last-step"])
def test_kill_then_resume_ends_bit_identical(user_folder: Path, tmp_path: Path, reference, killed_at: int,
                                             resumes_from: int):
    system_tmp = tmp_path / "system_tmp"
    system_tmp.mkdir()
    train_killed(user_folder, f"step:{killed_at}", tmpdir=system_tmp)
    [killed] = run_folders(user_folder / "logs")
    assert checkpoint.load(killed / "checkpoints" / "last.ckpt")["global_step"] == resumes_from

    resumed = train(user_folder, "ckpt_path=last", tmpdir=system_tmp)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {killed / 'checkpoints' / 'last.ckpt'}" in resumed.stdout + resumed.stderr
    assert_same_end(finished_run(user_folder / "logs"), reference.run)
    assert not temporaries(user_folder) and not files(system_tmp)


@pytest.fixture(scope="module")
def killed_during_save(tmp_path_factory: pytest.TempPathFactory, reference):
    """Logs on their own tmpfs (a filesystem apart from the system temp folder, as on clusters); the run is
    killed half-way through writing its second last.ckpt (step 8), then resumed with ``ckpt_path=last``."""
    folder = tmp_path_factory.mktemp("killed_during_save")
    user, system_tmp = folder / "user", folder / "system_tmp"
    system_tmp.mkdir()
    shutil.copytree(reference.root / "data_cache", user / "data_cache")
    with tmpfs(folder / "logs_tmpfs", "256m") as logs:
        train_killed(user, "save:2", f"paths.log_dir={logs}", tmpdir=system_tmp)
        [killed] = run_folders(logs)
        state = {"killed": killed, "system_tmp": system_tmp, "logs": logs,
                 "step_at_kill": checkpoint.load(killed / "checkpoints" / "last.ckpt")["global_step"],
                 "temporaries_at_kill": temporaries(logs)}
        state["resumed"] = train(user, "ckpt_path=last", f"paths.log_dir={logs}", tmpdir=system_tmp)
        yield state


def test_kill_during_a_save_resumes_the_previous_checkpoint_bit_identical(killed_during_save, reference):
    state = killed_during_save
    # the file being replaced is whole (its digest checks out) and still the previous save, step 4
    assert state["step_at_kill"] == 4
    # the partial bytes went to a temporary beside the target, never to the system temp folder (the old save's
    # tempfile + shutil.move, which truncated last.ckpt across filesystems)
    assert [p.parent for p in state["temporaries_at_kill"]] == [state["killed"] / "checkpoints"]
    assert not files(state["system_tmp"])
    assert state["resumed"].returncode == 0, state["resumed"].stderr[-3000:]
    assert_same_end(finished_run(state["logs"]), reference.run)


def test_kill_during_a_save_leaves_no_temporary_file_after_resume(killed_during_save):
    # the killed writer's partial file is removed when ckpt_path=last resolves to its folder (its pid is gone)
    assert not temporaries(killed_during_save["logs"])
