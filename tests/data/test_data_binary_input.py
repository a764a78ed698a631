"""A binary file given as text (a saved model, a gzip blob, random bytes) is refused by training and by prepare
with one line naming it; among text files in a folder or glob it is skipped with a warning. Text in another
encoding with a few bad bytes is still read (and warned about)."""

from __future__ import annotations

import gzip
import logging
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from scratchllm.data import TextFiles, TinyShakespeare
from scratchllm.errors import DataError
from scratchllm.textio import SNIFF_BYTES, binary_reason
from tests.training.conftest import FAST, run_cli

PROSE = ("It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
         "foolishness, it was the epoch of belief, it was the epoch of incredulity.\n") * 20
OTHER_PROSE = ("Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my "
               "purse, and nothing particular to interest me on shore, I thought I would sail about a little.\n")


def _torch_file(path: Path) -> Path:
    import torch

    torch.save({"weight": torch.randn(32, 32)}, path)  # a zip archive with a pickle and raw float32 storage
    return path


def _gzip_blob(path: Path) -> Path:
    path.write_bytes(gzip.compress(PROSE.encode() + random.Random(1).randbytes(4000)))
    return path


def _random_bytes(path: Path) -> Path:
    path.write_bytes(random.Random(2).randbytes(20000))
    return path


BINARIES = {"torch": _torch_file, "gzip": _gzip_blob, "random": _random_bytes}


def _latin1_text(path: Path) -> Path:
    """Mostly ASCII text saved as Latin-1: four bytes are not UTF-8."""
    path.write_bytes(PROSE.encode() + "Caf\xe9, na\xefve, d\xe9j\xe0 vu.\n".encode("latin-1") + PROSE.encode())
    return path


def _one_error_line(proc) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    return lines[0]


# ------------------------------------------------------------------------------------------ the rule


def test_rule_nul_bytes_and_undecodable_share() -> None:
    assert binary_reason(b"PK\x03\x04\x00\x00\x08\x08", "utf-8", hint="h") == "NUL bytes"
    text = "hello, w\u00f6rld\n" * 40
    assert binary_reason(text.encode("utf-16"), "utf-16", hint="h") is None  # NULs are part of UTF-16 text
    assert binary_reason(text.encode("utf-16"), "utf-8", hint="h") == "NUL bytes"
    assert binary_reason(text.encode("latin-1"), "utf-8", hint="h") is None  # 40 bad bytes in 560: text
    russian = ("\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440\n" * 40).encode("cp1251")
    reason = binary_reason(russian, "utf-8", hint="h")
    assert reason is not None and reason.endswith("% undecodable as utf-8"), reason
    assert binary_reason(russian, "cp1251", hint="h") is None
    # a character cut in two by the end of the sniffed head is not an error
    head = ("\u00e9" * SNIFF_BYTES).encode()[: SNIFF_BYTES - 1]
    assert binary_reason(head, "utf-8", hint="h") is None


# ------------------------------------------------------------------------------------------ TextFiles


@pytest.mark.parametrize("kind", sorted(BINARIES))
def test_textfiles_refuses_a_binary_file(tmp_path, kind) -> None:
    path = BINARIES[kind](tmp_path / f"model.{kind}")
    with pytest.raises(DataError) as info:
        TextFiles(str(path)).splits()
    message = str(info.value)
    assert message.startswith(f"data.path: {path} looks binary (") and "not text; pass text files" in message
    assert "\n" not in message


def test_textfiles_skips_binaries_among_text_files(tmp_path, caplog) -> None:
    d = tmp_path / "books"
    d.mkdir()
    (d / "a.txt").write_text(PROSE, encoding="utf-8")
    (d / "b.txt").write_text(PROSE.upper(), encoding="utf-8")
    _torch_file(d / "c.txt")  # a model saved under a text name is swept up by the folder
    _random_bytes(d / "d.bin")  # and random bytes by the glob
    with caplog.at_level(logging.WARNING):
        folder = TextFiles(str(d), val_fraction=0.5).splits()
        glob = TextFiles(str(d / "*"), val_fraction=0.5).splits()
    assert folder == glob == {"train": [PROSE], "val": [PROSE.upper()]}
    warned = [r.getMessage() for r in caplog.records if "looks binary" in r.getMessage()]
    assert any(str(d / "c.txt") in m and "skipped" in m for m in warned), warned
    assert any(str(d / "d.bin") in m for m in warned), warned
    with pytest.raises(DataError, match=r"c\.txt looks binary .*and so do the other 1 input file"):
        TextFiles([str(d / "c.txt"), str(d / "d.bin")]).splits()


def test_textfiles_accepts_text_with_a_few_bad_bytes(tmp_path, caplog) -> None:
    path = _latin1_text(tmp_path / "latin1.txt")
    corpus = TextFiles(str(path))
    with caplog.at_level(logging.WARNING):
        splits = corpus.splits()
    assert "Caf\ufffd" in splits["train"][0] + splits["val"][0]
    assert corpus.decode_errors == {str(path): 4}
    assert any("undecodable byte sequence(s) replaced" in r.getMessage() for r in caplog.records)
    latin1 = TextFiles(str(path), encoding="latin-1").splits()
    assert "Caf\u00e9" in latin1["train"][0] + latin1["val"][0]


def test_utf16_text_is_read_with_its_encoding(tmp_path) -> None:
    path = tmp_path / "utf16.txt"
    path.write_text(PROSE, encoding="utf-16")
    with pytest.raises(DataError, match="NUL bytes.*encoding"):
        TextFiles(str(path)).splits()
    splits = TextFiles(str(path), encoding="utf-16").splits()
    assert splits["train"][0] + splits["val"][0] == PROSE


def test_tinyshakespeare_without_checksum_refuses_a_binary_file(tmp_path) -> None:
    path = _gzip_blob(tmp_path / "input.txt")
    with pytest.raises(DataError, match=f"data.corpus.path: {path} looks binary"):
        TinyShakespeare(str(path), sha256=None).splits()
    _latin1_text(path)
    assert "Caf\ufffd" in "".join(sum(TinyShakespeare(str(path), sha256=None).splits().values(), []))


# ------------------------------------------------------------------------------------------ entry points


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["torch", "random"])
def test_train_refuses_a_binary_file(tmp_path, kind) -> None:
    work = tmp_path / "work"
    work.mkdir()
    path = BINARIES[kind](tmp_path / "model.bin")
    proc = run_cli("-m", "scratchllm.train", "data=text_files", f"data.path={path}", *FAST, "trainer.max_steps=2",
                   cwd=work, timeout=300)
    line = _one_error_line(proc)
    assert line.startswith(f"error: data.path: {path} looks binary ("), line
    assert "not text; pass text files" in line and "data.corpus.encoding" in line
    assert not list(work.rglob("*.ckpt")) and "result:" not in proc.stdout


@pytest.mark.slow
def test_train_accepts_text_with_a_few_bad_bytes(tmp_path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    path = _latin1_text(tmp_path / "latin1.txt")
    proc = run_cli("-m", "scratchllm.train", "data=text_files", f"data.path={path}", *FAST, "trainer.max_steps=2",
                   "trainer.val_check_interval=2", "sample.max_new_tokens=0", cwd=work, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "result:" in proc.stdout
    assert "4 undecodable byte sequence(s) replaced" in proc.stdout + proc.stderr


def _prepare(*args: str, cwd: Path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    env.pop("PYTEST_CURRENT_TEST", None)
    return subprocess.run([sys.executable, "-m", "scratchllm.prepare", *args, "tokenizer=char", "progress=false",
                           "workers=1", "prepare=minimal", "val_fraction=0.5"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_prepare_skips_binaries_and_keeps_text_with_a_few_bad_bytes(tmp_path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    d = tmp_path / "in"
    d.mkdir()
    _latin1_text(d / "a.txt")
    (d / "b.txt").write_text(OTHER_PROSE, encoding="utf-8")
    _torch_file(d / "c.txt")
    proc = _prepare(f"input={d}", f"output={tmp_path / 'out'}", cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    logged = proc.stdout + proc.stderr
    assert f"{d / 'c.txt'} looks binary (NUL bytes), not text: skipped" in logged
    assert "kept 2 of 3 documents" in logged
