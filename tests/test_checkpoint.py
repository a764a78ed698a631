"""scratchllm.checkpoint: the one module that resolves, saves, loads and describes checkpoints."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest
import torch

from scratchllm import checkpoint
from scratchllm.errors import CheckpointError
from scratchllm.generation.loading import load_for_generation
from tests.training.conftest import run_cli

REPO = Path(__file__).resolve().parents[1]
LEGACY = REPO / "tests" / "fixtures" / "checkpoint_v0_tiny.ckpt"


def _ckpt(values: torch.Tensor | None = None) -> dict:
    weight = values if values is not None else torch.arange(4096, dtype=torch.float32) * 0.5 + 1234.25
    return {"state_dict": {"model.w": weight}, "optimizer_states": [{"state": {0: {"exp_avg": weight * 2}}}],
            "hyper_parameters": {"model": {"n_layer": 1}}}


def test_save_load_round_trip_with_digest(tmp_path):
    path = tmp_path / "a" / "x.ckpt"
    checkpoint.save(_ckpt(), path)
    loaded = checkpoint.load(path)
    assert torch.equal(loaded["state_dict"]["model.w"], _ckpt()["state_dict"]["model.w"])
    assert loaded[checkpoint.META]["digest"] == checkpoint.digest(loaded)
    assert [p.name for p in path.parent.iterdir()] == ["x.ckpt"]  # no temporary file left beside it


def _flip_inside_tensor(path: Path, tensor: torch.Tensor) -> None:
    data = bytearray(path.read_bytes())
    needle = tensor.numpy().tobytes()[400:432]  # a run of the tensor's own bytes, well inside it
    at = data.find(needle)
    assert at > 0
    data[at + 3] ^= 0x10
    path.write_bytes(bytes(data))


def test_flipped_bytes_inside_a_weight_are_refused(tmp_path):
    path = tmp_path / "x.ckpt"
    original = _ckpt()
    checkpoint.save(original, path)
    _flip_inside_tensor(path, original["state_dict"]["model.w"])
    with pytest.raises(CheckpointError, match=r"x\.ckpt is corrupt: its tensors do not match the digest"):
        checkpoint.load(path)
    checkpoint.load(path, verify=False)  # it is readable: only the digest tells


def test_failed_save_keeps_the_old_file_and_leaves_nothing(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    checkpoint.save(_ckpt(), path)
    before = path.read_bytes()

    def full_disk(obj, f, *args, **kwargs):
        f.write(b"partial bytes")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(CheckpointError, match=r"no space left .*: it needs about 0\.0 MB; .*last good checkpoint is untouched"):
        checkpoint.save(_ckpt(torch.zeros(4096)), path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_unreadable_files_are_one_line_errors(tmp_path):
    empty = tmp_path / "empty.ckpt"
    empty.touch()
    with pytest.raises(CheckpointError, match="is empty"):
        checkpoint.load(empty)
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(CheckpointError, match="torch.load cannot read it"):
        checkpoint.load(junk)
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint.load(tmp_path / "missing.ckpt")


def test_resolve_last_run_folder_and_files(tmp_path):
    logs = tmp_path / "logs"
    older = logs / "train" / "runs" / "a" / "checkpoints" / "last.ckpt"
    newer = logs / "train" / "runs" / "b" / "checkpoints" / "last.ckpt"
    for p in (older, newer):
        p.parent.mkdir(parents=True)
        p.write_bytes(b"x")
    import os

    os.utime(older, (1_000, 1_000))
    assert checkpoint.resolve("last", logs) == newer
    assert checkpoint.resolve(str(logs / "train" / "runs" / "a"), logs) == older  # a run folder
    assert checkpoint.resolve(str(older), logs) == older
    with pytest.raises(CheckpointError, match="no checkpoints/last.ckpt"):
        checkpoint.resolve("last", tmp_path / "none")


def test_checkpoint_written_before_the_metadata_still_loads():
    ckpt = checkpoint.load(LEGACY)
    assert checkpoint.META not in ckpt
    meta = checkpoint.describe(ckpt, LEGACY)
    assert meta.format == 0 and meta.model["n_embd"] == 16 and meta.tokenizer["name"] == "char"
    model, tokenizer = load_for_generation(str(LEGACY))
    assert model.config.n_layer == 1 and tokenizer.vocab_size == model.config.vocab_size


def test_newer_format_is_refused():
    ckpt = {"state_dict": {}, checkpoint.META: {"format": checkpoint.FORMAT + 1, "model": {}}}
    with pytest.raises(CheckpointError, match="newer scratchllm"):
        checkpoint.describe(ckpt)


def test_one_module_loads_checkpoints():
    import ast

    callers = set()
    for file in (REPO / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"):
                callers.add(file.relative_to(REPO / "src").as_posix())
    assert callers == {"scratchllm/checkpoint.py"}


@pytest.mark.slow
def test_corrupt_checkpoint_in_generate_and_resume_is_one_line(tmp_path):
    train = run_cli("-m", "scratchllm.train", "trainer.max_steps=2", "trainer.val_check_interval=2",
                    "data.max_val_windows=4", "sample.max_new_tokens=0", cwd=tmp_path)
    assert train.returncode == 0, train.stderr[-2000:]
    last = next(tmp_path.glob("logs/train/runs/*/checkpoints/last.ckpt"))
    weight = checkpoint.load(last)["state_dict"]["model.lm_head.weight"]
    _flip_inside_tensor(last, weight.contiguous())
    for args in (["-m", "scratchllm.generate", "max_new_tokens=4"],
                 ["-m", "scratchllm.train", "trainer.max_steps=4", "ckpt_path=last", "sample.max_new_tokens=0"]):
        proc = run_cli(*args, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr[-2000:]
        line = proc.stderr.strip().splitlines()[-1]
        assert line.startswith("error: checkpoint ") and "last.ckpt is corrupt" in line, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_legacy_checkpoint_resumes(tmp_path):
    run = tmp_path / "old" / "checkpoints"
    run.mkdir(parents=True)
    shutil.copy(LEGACY, run / "last.ckpt")
    proc = run_cli("-m", "scratchllm.train", "model.n_layer=1", "model.n_embd=16", "model.n_head=2",
                   "model.context_length=16", "trainer.max_steps=4", "trainer.val_check_interval=2",
                   "data.max_val_windows=4", "sample.max_new_tokens=0", f"ckpt_path={run / 'last.ckpt'}",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '"global_step": 4' in proc.stdout
