"""Corpus + tokenizer spec -> a cache folder of token shards, built once and reused.

The folder is ``cache_dir/<corpus>-<tokenizer>-<key>`` where ``key`` hashes the corpus fingerprint, the
tokenizer spec and the shard format version: change any of them and a new folder is built; change nothing
and the shards are reused. A folder counts as complete only when its ``manifest.json`` exists, and the
folder is built under a temporary name and renamed into place at the end, so a crash (or Ctrl-C) never
leaves a half-written cache that a later run would trust.

Inside::

    train_000000.bin ...   token shards (see shards.py), ~100M tokens each
    val_000000.bin ...
    tokenizer.json         the fitted tokenizer (a char vocabulary depends on the data)
    manifest.json          shard lists and counts; written last = "this cache is complete"

Tokenisation choices:

- a char tokenizer is fitted on the TRAIN split only (validation text must not leak into the vocabulary).
  Characters that only occur in validation become ``<unk>`` under the char default ``unknown="replace"``;
  with ``unknown="error"`` they stop preparation with a DataError that names them and the fix.
- documents are joined with the tokenizer's end-of-text id when it has one (gpt2: one ``eot`` after every
  document, as GPT-2 was trained), otherwise with the text ``"\\n\\n"`` between documents (char).
- gpt2 encodes large chunks in parallel threads (``encode_ordinary_batch``); documents are cut into chunks
  only right after a newline that is followed by a non-space character: GPT-2's pre-tokeniser always ends a
  piece there, so the ids are exactly those of encoding the whole document at once. (A new tokenizer with
  another pre-tokeniser must check that this cut point is still a piece boundary for it.)

The folder layout (``ShardWriter``, ``write_manifest``, ``building_folder``, ``load_prepared``) is shared with the
curation pipeline (``python -m scratchllm.prepare``, ``data/curation/``), so both write the same kind of folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from scratchllm.data.corpora.base import SPLITS, Corpus, digest
from scratchllm.data.shards import FORMAT_VERSION, write_shard
from scratchllm.errors import DataError, InputError
from scratchllm.tokenizers import Tokenizer, build_tokenizer, load_tokenizer, normalize_spec
from scratchllm.tokenizers.char import CharTokenizer

log = logging.getLogger(__name__)

SHARD_TOKENS = 100_000_000  # tokens per shard file
MANIFEST = "manifest.json"
TOKENIZER_FILE = "tokenizer.json"
CHUNK_CHARS = 1 << 20  # target characters per tiktoken chunk
BATCH_CHARS = 1 << 24  # characters handed to one encode_ordinary_batch call
DOC_SEPARATOR = "\n\n"  # between documents, for tokenizers without an end-of-text id
_CUT = re.compile(r"\n(?=\S)")


@dataclass
class PreparedData:
    """Where a prepared corpus lives and how it was tokenised."""

    train: list[Path]
    val: list[Path]
    tokenizer: Tokenizer
    directory: Path
    train_tokens: int = 0
    val_tokens: int = 0


def cache_key(corpus: Corpus, tokenizer_spec: Mapping[str, Any] | str) -> str:
    return digest({"corpus": corpus.fingerprint(), "tokenizer": normalize_spec(tokenizer_spec),
                   "format": FORMAT_VERSION, "prepare": 1})[:16]


def _folder_name(corpus: Corpus, spec: dict[str, Any], key: str) -> str:
    kind = re.sub(r"[^a-z0-9]+", "", type(corpus).__name__.lower()) or "corpus"
    return f"{kind}-{spec['name']}-{key}"


def split_for_threads(text: str, chunk_chars: int = CHUNK_CHARS) -> list[str]:
    """Cut ``text`` into ~``chunk_chars`` pieces at points where GPT-2's pre-tokeniser always splits anyway."""
    if len(text) <= chunk_chars:
        return [text]
    pieces, start = [], 0
    while len(text) - start > chunk_chars:
        m = _CUT.search(text, start + chunk_chars)
        if m is None:
            break
        pieces.append(text[start : m.end()])
        start = m.end()
    pieces.append(text[start:])
    return pieces


def _encode_docs(tokenizer: Tokenizer, docs: list[str], split: str) -> Iterator[np.ndarray]:
    """Token arrays of the split, documents joined as described in the module docstring."""
    eot = tokenizer.eot_id
    if isinstance(tokenizer, CharTokenizer):  # vectorised; no separator token, so join with text
        sep = tokenizer.encode_array(DOC_SEPARATOR)
        for i, doc in enumerate(docs):
            if i:
                yield sep
            try:
                yield tokenizer.encode_array(doc)
            except InputError as e:
                raise DataError(f"the {split} split has characters the char vocabulary (fitted on the train "
                                f"split) lacks: {e}") from e
        return
    # generic path: batch big chunks through encode_batch (tiktoken runs them in threads)
    sep = None if eot is not None else np.asarray(tokenizer.encode(DOC_SEPARATOR), dtype=np.int64)
    pending: list[tuple[str, bool, bool]] = []  # (chunk, first chunk of a later document, last chunk of a doc)
    pending_chars = 0

    def flush() -> Iterator[np.ndarray]:
        for (_, sep_before, last), ids in zip(pending, tokenizer.encode_batch([c for c, _, _ in pending])):
            if sep_before and sep is not None:
                yield sep
            yield np.asarray(ids, dtype=np.int64)
            if last and eot is not None:
                yield np.array([eot], dtype=np.int64)

    for doc_i, doc in enumerate(docs):
        chunks = split_for_threads(doc)
        for j, chunk in enumerate(chunks):
            pending.append((chunk, doc_i > 0 and j == 0, j == len(chunks) - 1))
            pending_chars += len(chunk)
            if pending_chars >= BATCH_CHARS:
                yield from flush()
                pending, pending_chars = [], 0
    if pending:
        yield from flush()


class ShardWriter:
    """Accumulates token arrays and writes a shard every ``shard_tokens`` tokens (one writer per split).

    ``add`` takes raw token arrays; ``add_document`` also joins documents the way every prepared folder does
    (the end-of-text id after each document, or ``DOC_SEPARATOR`` between documents for tokenizers without
    one), so ``prepare_corpus`` and ``python -m scratchllm.prepare`` write identical layouts."""

    def __init__(self, folder: Path, split: str, tokenizer: Tokenizer, shard_tokens: int = SHARD_TOKENS) -> None:
        self.folder, self.split, self.tokenizer, self.shard_tokens = folder, split, tokenizer, shard_tokens
        self.buffer: list[np.ndarray] = []
        self.buffered = 0
        self.paths: list[Path] = []
        self.total = 0
        self.documents = 0
        self._sep: np.ndarray | None = None

    def add(self, ids: np.ndarray) -> None:
        while ids.size:
            take = min(ids.size, self.shard_tokens - self.buffered)
            self.buffer.append(ids[:take])
            self.buffered += take
            ids = ids[take:]
            if self.buffered == self.shard_tokens:
                self.flush()

    def add_document(self, ids: np.ndarray) -> None:
        """Append one document's ids (from ``encode_document``) with the document separator."""
        eot = self.tokenizer.eot_id
        if eot is None and self.documents:
            if self._sep is None:
                self._sep = encode_document(self.tokenizer, DOC_SEPARATOR)
            self.add(self._sep)
        self.add(np.asarray(ids))
        if eot is not None:
            self.add(np.array([eot], dtype=np.int64))
        self.documents += 1

    def flush(self) -> None:
        if not self.buffered:
            return
        path = self.folder / f"{self.split}_{len(self.paths):06d}.bin"
        write_shard(path, np.concatenate(self.buffer), tokenizer=self.tokenizer.name,
                    vocab_size=self.tokenizer.vocab_size)
        self.paths.append(path)
        self.total += self.buffered
        self.buffer, self.buffered = [], 0


_ShardWriter = ShardWriter  # the name it had before it was shared


def encode_document(tokenizer: Tokenizer, text: str) -> np.ndarray:
    """Ids of one document as a 1-D integer array (the char tokenizer's vectorised path when it is one)."""
    if isinstance(tokenizer, CharTokenizer):
        return tokenizer.encode_array(text)
    return np.asarray(tokenizer.encode(text), dtype=np.int64)


def write_manifest(folder: Path, manifest: Mapping[str, Any]) -> None:
    """Write ``manifest.json``: written last, it is what makes a folder a complete prepared folder."""
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")


@contextlib.contextmanager
def building_folder(folder: Path) -> Iterator[Path]:
    """Build ``folder`` under a temporary sibling name and rename it into place when the block succeeds.

    An existing ``folder`` is replaced (the caller decided it may be). On any error the temporary folder is
    removed, so a crash never leaves a half-built folder under the final name."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.{uuid.uuid4().hex}.tmp"  # os.mkdir honours the umask; mkdtemp: 0700
    tmp.mkdir()
    try:
        yield tmp
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / MANIFEST).is_file():  # not "another process finished first"
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_prepared(folder: Path) -> PreparedData:
    """The ``PreparedData`` of a complete prepared folder (one with ``manifest.json``)."""
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    return PreparedData(
        train=[folder / n for n in manifest["train"]],
        val=[folder / n for n in manifest["val"]],
        tokenizer=load_tokenizer(folder / TOKENIZER_FILE),
        directory=folder,
        train_tokens=int(manifest["train_tokens"]),
        val_tokens=int(manifest["val_tokens"]),
    )


_load_cached = load_prepared


def prepare_corpus(
    corpus: Corpus,
    tokenizer_spec: Mapping[str, Any] | str,
    cache_dir: str | os.PathLike[str],
    *,
    shard_tokens: int = SHARD_TOKENS,
) -> PreparedData:
    """Tokenise ``corpus`` into shards under ``cache_dir`` (or reuse the shards a previous call built).

    A ``ShardFolder`` is already prepared: it is returned as it is, with its own tokenizer."""
    from scratchllm.data.shard_folder import ShardFolder

    if isinstance(corpus, ShardFolder):
        folder = corpus.check()
        try:
            return load_prepared(folder)
        except (OSError, KeyError, ValueError) as e:
            raise DataError(f"shard folder {folder} is unreadable ({e}); prepare it again") from e
    spec = normalize_spec(tokenizer_spec)
    key = cache_key(corpus, spec)
    cache_dir = Path(cache_dir)
    folder = cache_dir / _folder_name(corpus, spec, key)
    if (folder / MANIFEST).is_file():
        try:
            return load_prepared(folder)
        except (OSError, KeyError, ValueError) as e:  # ValueError covers JSON and our DataError
            log.warning("cache %s is unreadable (%s); rebuilding it", folder, e)

    t0 = time.perf_counter()
    splits = corpus.splits()
    for split in SPLITS:
        docs = splits.get(split) or []
        if not any(docs):
            raise DataError(f"the {split} split of {corpus!r} is empty; add data or change "
                            "data.corpus.val_fraction / val_plays so both splits get some")
    train_docs = [d for d in splits["train"] if d]
    val_docs = [d for d in splits["val"] if d]
    # (the separator is part of the fitting text so a char vocabulary always holds it)
    fit_text = DOC_SEPARATOR.join(train_docs) + DOC_SEPARATOR if spec["name"] == "char" else None
    tokenizer = build_tokenizer(spec, train_text=fit_text)
    del fit_text

    counts: dict[str, int] = {}
    with building_folder(folder) as tmp:  # an incomplete leftover (no manifest) is replaced
        names: dict[str, list[str]] = {}
        for split, docs in (("train", train_docs), ("val", val_docs)):
            writer = ShardWriter(tmp, split, tokenizer, shard_tokens)
            for ids in _encode_docs(tokenizer, docs, split):
                writer.add(ids)
            writer.flush()
            if writer.total == 0:
                raise DataError(f"the {split} split tokenised to no tokens; add data")
            counts[split], names[split] = writer.total, [p.name for p in writer.paths]
        tokenizer.save(tmp / TOKENIZER_FILE)
        write_manifest(tmp, {
            "corpus": repr(corpus),
            "fingerprint": corpus.fingerprint(),
            "tokenizer_spec": spec,
            "vocab_size": tokenizer.vocab_size,
            "format_version": FORMAT_VERSION,
            "train": names["train"],
            "val": names["val"],
            "train_tokens": counts["train"],
            "val_tokens": counts["val"],
            "documents": {"train": len(train_docs), "val": len(val_docs)},
            "seconds": round(time.perf_counter() - t0, 2),
        })
    log.info("prepared %s: %d train / %d val tokens in %s", folder.name, counts["train"], counts["val"], folder)
    return load_prepared(folder)
