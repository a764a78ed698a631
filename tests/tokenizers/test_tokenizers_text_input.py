"""Streaming training text out of files, folders and globs (.txt, .md, .jsonl, .gz)."""

from __future__ import annotations

import gzip
import json
import logging
import os
import random
import subprocess
import sys

import pytest

from scratchllm.errors import DataError
from scratchllm.tokenizers.text_input import ReadStats, iter_texts, resolve_inputs


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("line one\r\nline two\n" * 50, encoding="utf-8", newline="")
    (root / "b.md").write_text("# Title\n\nSome *markdown* 🎉\n", encoding="utf-8")
    (root / "sub" / "c.jsonl").write_text(
        json.dumps({"text": "doc one"}) + "\n\n" + json.dumps({"id": 3}) + "\n" + json.dumps({"text": "doc \ud800 two"})
        + "\n", encoding="utf-8")
    with gzip.open(root / "sub" / "d.txt.gz", "wt", encoding="utf-8") as f:
        f.write("compressed text\n")
    (root / "ignored.bin").write_bytes(b"\x00\x01")
    return root


def test_folder_picks_text_files_sorted(corpus) -> None:
    names = [p.name for p in resolve_inputs(corpus)]
    assert names == ["a.txt", "b.md", "c.jsonl", "d.txt.gz"]


def test_glob_file_and_repeats(corpus) -> None:
    assert [p.name for p in resolve_inputs(str(corpus / "**" / "*.txt*"))] == ["a.txt", "d.txt.gz"]
    # an explicit file is read whatever its extension; a file named twice is read once
    assert [p.name for p in resolve_inputs([corpus / "ignored.bin", str(corpus / "a.txt"), corpus / "a.txt"])] \
        == ["ignored.bin", "a.txt"]
    with pytest.raises(DataError, match="no input files match"):
        resolve_inputs(str(corpus / "*.nope"))
    (corpus / "empty").mkdir()
    with pytest.raises(DataError, match="holds no"):
        resolve_inputs(corpus / "empty")


def test_contents_and_stats(corpus) -> None:
    stats = ReadStats()
    chunks = list(iter_texts(corpus, chunk_chars=64, stats=stats))
    text = "".join(chunks)
    assert text.startswith("line one\r\nline two\nline one\r\n")  # "\r\n" kept as it is
    assert "Some *markdown* 🎉\n" in text and "doc one" in text and "compressed text\n" in text
    assert "doc \ufffd two" in text  # a lone surrogate from a JSON escape becomes U+FFFD
    assert stats.files == 4 and stats.documents == 2 + 2 + 1 and stats.skipped_lines == 1
    assert stats.chars == len(text) and stats.bytes == len(text.encode("utf-8"))
    # chunks end at line ends and stay near the requested size
    a_chunks = [c for c in chunks if c.startswith("line")]
    assert all(c.endswith("\n") for c in a_chunks) and max(map(len, a_chunks)) < 64 + 20


def test_max_chars(corpus) -> None:
    stats = ReadStats()
    text = "".join(iter_texts(corpus, max_chars=100, stats=stats))
    assert len(text) == 100 == stats.chars and stats.files == 1


def test_jsonl_errors_and_field(tmp_path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"body": "hello"}\nnot json\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 2 is not JSON"):
        list(iter_texts(path, text_field="body"))
    path.write_text('{"body": "hello"}\n', encoding="utf-8")
    assert list(iter_texts(path, text_field="body")) == ["hello"]


def test_undecodable_bytes_are_counted(tmp_path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("café\n".encode("latin-1"))
    stats = ReadStats()
    assert list(iter_texts(path, stats=stats)) == ["caf\ufffd\n"]
    assert stats.replaced == 1


# ------------------------------------------------------------------------------------------ binary input

PROSE = "It was the best of times, it was the worst of times, it was the age of wisdom.\n" * 40


def _binaries(root) -> list:
    """A saved tensor (a zip archive), a gzip blob and random bytes, as a user might pass by mistake."""
    import torch

    torch.save({"weight": torch.randn(32, 32)}, root / "model.bin")
    (root / "blob.gz.bin").write_bytes(gzip.compress(random.Random(1).randbytes(4000)))
    (root / "noise.bin").write_bytes(random.Random(2).randbytes(20000))
    return [root / "model.bin", root / "blob.gz.bin", root / "noise.bin"]


def _tokenizer_train(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("PYTEST_CURRENT_TEST", None)
    return subprocess.run([sys.executable, "-m", "scratchllm.tokenizer", "train", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_binary_files_are_refused_alone_and_skipped_among_text(tmp_path, caplog) -> None:
    binaries = _binaries(tmp_path)
    for path in binaries:
        with pytest.raises(DataError, match=f"^input: {path} looks binary \\(.*\\), not text; pass text files"):
            list(iter_texts(path))
    with pytest.raises(DataError, match="and so do the other 2 input file"):
        list(iter_texts(binaries))
    (tmp_path / "a.txt").write_text(PROSE, encoding="utf-8")
    stats = ReadStats()
    with caplog.at_level(logging.WARNING):
        text = "".join(iter_texts(str(tmp_path / "*"), stats=stats))
    assert text == PROSE and stats.files == 1 and stats.replaced == 0
    assert sorted(stats.skipped_binary) == sorted(map(str, binaries))
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert all(f"{p} looks binary" in warned for p in binaries) and "skipped" in warned


def test_gzipped_text_is_sniffed_after_decompression(tmp_path) -> None:
    with gzip.open(tmp_path / "t.txt.gz", "wt", encoding="utf-8") as f:
        f.write(PROSE)
    assert "".join(iter_texts(tmp_path / "t.txt.gz")) == PROSE  # the .gz header's NUL bytes are not the text's


@pytest.mark.parametrize("which", [0, 2])
def test_cli_refuses_a_binary_file(tmp_path, which) -> None:
    work = tmp_path / "work"
    work.mkdir()
    path = _binaries(tmp_path)[which]
    proc = _tokenizer_train(f"input={path}", f"output={tmp_path / 'tok'}", "vocab_size=300", cwd=work)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: input: {path} looks binary ("), proc.stderr
    assert not (tmp_path / "tok").exists()


def test_cli_trains_on_text_with_a_few_bad_bytes(tmp_path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    path = tmp_path / "latin1.txt"
    path.write_bytes(PROSE.encode() + "Caf\xe9, na\xefve.\n".encode("latin-1"))
    proc = _tokenizer_train(f"input={path}", f"output={tmp_path / 'tok'}", "vocab_size=300", cwd=work)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "note: 2 character(s) were not valid UTF-8" in proc.stdout
    assert (tmp_path / "tok" / "vocab.tiktoken").is_file()
