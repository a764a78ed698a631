"""A damaged shard names the right fix (#13): a data cache is rebuilt by deleting it, but a prepared folder
(``data=shards data.path=…``) may be the only copy of the user's data, so the message says to prepare it again and
never to delete it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scratchllm.data import ShardDataModule, ShardFolder, TextFiles, prepare_corpus
from scratchllm.errors import DataError

PROSE = "Now is the winter of our discontent made glorious summer by this sun of York. "


def _damaged(tmp_path: Path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(PROSE * 200, encoding="utf-8")
    data = prepare_corpus(TextFiles(str(corpus)), "char", tmp_path / "cache")
    raw = bytearray(data.train[0].read_bytes())
    raw[-1] ^= 0xFF
    data.train[0].write_bytes(bytes(raw))
    return data


def _setup_error(corpus, cache: Path) -> str:
    dm = ShardDataModule(corpus, tokenizer="char", context_length=16, batch_size=2, cache_dir=str(cache))
    with pytest.raises(DataError) as err:
        dm.prepare_data()
        dm.setup("fit")
    return str(err.value)


def test_the_fix_depends_on_who_can_rebuild_the_folder(tmp_path) -> None:
    data = _damaged(tmp_path)
    as_cache = _setup_error(TextFiles(str(tmp_path / "corpus.txt")), tmp_path / "cache")
    assert "checksum mismatch" in as_cache and as_cache.endswith(f"delete {data.directory} to rebuild it")
    as_prepared = _setup_error(ShardFolder(str(data.directory)), tmp_path / "unused")
    assert "checksum mismatch" in as_prepared and "delete" not in as_prepared  # before: "delete <folder> ..."
    assert f"the prepared folder {data.directory} is damaged; run python -m scratchllm.prepare again" in as_prepared
    assert data.train[0].is_file()  # nothing was removed


def test_train_on_a_damaged_prepared_folder_says_prepare_again(tmp_path) -> None:
    data = _damaged(tmp_path)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    for var in ("PYTEST_CURRENT_TEST", "SCRATCHLLM_ROOT"):  # logs/ and data_cache/ go in tmp_path
        env.pop(var, None)
    run = subprocess.run([sys.executable, "-m", "scratchllm.train", "data=shards", f"data.path={data.directory}",
                          "model=nano", "model.context_length=16", "trainer.max_steps=1", "threads=1"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 2, run.stderr[-3000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in run.stderr
    assert f"{data.train[0]} is corrupt (checksum mismatch); the prepared folder {data.directory} is damaged; " \
           "run python -m scratchllm.prepare again" in errors[0]
