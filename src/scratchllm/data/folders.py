"""The prepared-folder layout, and how a folder is built without two processes ever mixing their work.

A prepared folder (a training data cache, or what ``python -m scratchllm.prepare`` writes) holds::

    train_000000.bin ...   token shards (see shards.py)
    val_000000.bin ...
    tokenizer.json         the tokenizer the shards were written with
    manifest.json          shard lists and counts; written last = "this folder is complete"

Building one (``building_folder``): the work goes into a temporary sibling ``.<name>.<random>.tmp`` and is
renamed into place at the end, so a crash (or Ctrl-C) never leaves a half-written folder under the final name,
and a reader never sees one. Two processes that want the same folder (five trainings started at once on a fresh
cache, two ``prepare`` runs to one output) coordinate through ``folder_lock``: an ``flock`` on the file
``.<name>.lock`` beside the folder, removed by its holder when done (a process that locked a file just removed
checks that and tries again). The kernel drops the lock when its holder dies, even on kill -9: a file left by a
killed process is simply locked again by the next one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from scratchllm.errors import DataError
from scratchllm.tokenizers import Tokenizer, load_tokenizer

try:
    import fcntl
except ImportError:  # Windows: no flock; folders are still published atomically, just not coordinated
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
TOKENIZER_FILE = "tokenizer.json"


@dataclass
class PreparedData:
    """Where a prepared corpus lives and how it was tokenised.

    ``rebuild_hint`` is what to do when one of its shards turns out damaged: a data cache is rebuilt by
    deleting it, a folder ``python -m scratchllm.prepare`` wrote (or any ``data.path``) only by preparing it
    again; deleting it would lose the user's data."""

    train: list[Path]
    val: list[Path]
    tokenizer: Tokenizer
    directory: Path
    train_tokens: int = 0
    val_tokens: int = 0
    rebuild_hint: str = ""

    def __post_init__(self) -> None:
        if not self.rebuild_hint:
            self.rebuild_hint = f"delete {self.directory} to rebuild it"


def prepared_folder_hint(folder: Path) -> str:
    """The fix for a damaged folder that training cannot rebuild (``data=shards data.path=<folder>``)."""
    return (f"the prepared folder {folder} is damaged; run python -m scratchllm.prepare again to rebuild it "
            "(training cannot: the folder is your data)")


def load_prepared(folder: Path, rebuild_hint: str = "") -> PreparedData:
    """The ``PreparedData`` of a complete prepared folder (one with ``manifest.json``)."""
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    return PreparedData(
        train=[folder / n for n in manifest["train"]],
        val=[folder / n for n in manifest["val"]],
        tokenizer=load_tokenizer(folder / TOKENIZER_FILE),
        directory=folder,
        train_tokens=int(manifest["train_tokens"]),
        val_tokens=int(manifest["val_tokens"]),
        rebuild_hint=rebuild_hint,
    )


def write_manifest(folder: Path, manifest: Mapping[str, Any]) -> None:
    """Write ``manifest.json``: written last, it is what makes a folder a complete prepared folder."""
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")


class FolderBusy(DataError):
    """Another process holds the lock of the folder (raised only by ``folder_lock(..., wait=False)``)."""


def _lock_path(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.lock"


def _same_file(path: Path, fd: int) -> bool:
    try:
        st, fst = os.stat(path), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


@contextlib.contextmanager
def folder_lock(folder: Path, *, wait: bool, busy: str = "") -> Iterator[None]:
    """Hold the exclusive lock of ``folder`` for the block.

    ``wait=True`` blocks until the holder is done (logging once that it waits); ``wait=False`` raises
    ``FolderBusy`` with ``busy`` (a one-line message; ``<pid>`` in it becomes the holder's process id)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    path = _lock_path(folder)
    while True:
        f = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            pid = f.read().strip() or "?"
            if not wait:
                f.close()
                raise FolderBusy(busy.replace("<pid>", pid)) from None
            log.info("waiting for process %s, which is building %s", pid, folder)
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        # The holder removes the file when it is done; one locked just before that is no longer the lock
        if _same_file(path, f.fileno()):
            break
        f.close()
    try:
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))  # for the "busy" message of whoever comes next
        f.flush()
        yield
    finally:
        path.unlink(missing_ok=True)  # while still holding it: see _same_file above
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        f.close()


def _sibling(folder: Path, kind: str) -> Path:
    # os.mkdir honours the umask (mkdtemp would make it 0700)
    return folder.parent / f".{folder.name}.{uuid.uuid4().hex}.{kind}"


@contextlib.contextmanager
def building_folder(folder: Path) -> Iterator[Path]:
    """Build ``folder`` in a temporary sibling and rename it into place when the block succeeds.

    The caller holds ``folder_lock``, so any other temporary sibling is what a killed build left: it goes. An
    existing ``folder`` is replaced (the caller decided it may be): it is renamed aside first and deleted after
    the new one is in place, so the final name is never a half-deleted folder. On any error the temporary
    folder is removed."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    ours = re.compile(rf"\.{re.escape(folder.name)}\.[0-9a-f]{{32}}\.(tmp|old)")  # what _sibling names
    for stale in folder.parent.iterdir():
        if ours.fullmatch(stale.name) and stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    tmp = _sibling(folder, "tmp")
    tmp.mkdir()
    try:
        yield tmp
        old = _sibling(folder, "old") if folder.exists() else None
        if old is not None:
            os.rename(folder, old)
        try:
            os.rename(tmp, folder)
        except BaseException:
            if old is not None:
                os.rename(old, folder)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
