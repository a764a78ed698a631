"""Corpus + tokenizer spec -> a cache folder of token shards, built once and reused.

The folder is ``cache_dir/<corpus>-<tokenizer>-<key>`` where ``key`` hashes the corpus fingerprint, the
tokenizer spec and the shard format version: change any of them and a new folder is built; change nothing
and the shards are reused. It has the prepared-folder layout of ``folders.py`` (shards, ``tokenizer.json``,
``manifest.json`` written last) and is built the way that module describes: under the folder's lock, in a
temporary sibling renamed into place at the end. So a crash never leaves a half-written cache that a later run
would trust, and when several trainings start at once on a fresh cache, one builds it while the others wait
for it and then reuse it.

Tokenisation choices (the joining of documents and the chunking are in ``tokenize.py``):

- a tokenizer that learns its vocabulary from data (char) is fitted on the TRAIN split only (validation text
  must not leak into the vocabulary). Characters that only occur in validation become ``<unk>`` under the
  char default ``unknown="replace"``; with ``unknown="error"`` they stop preparation with a DataError that
  names them and the fix.

``ShardWriter`` is shared with the curation pipeline (``python -m scratchllm.prepare``, ``data/curation/``), so
both write the same kind of folder.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from scratchllm.data.corpora.base import SPLITS, Corpus, digest
from scratchllm.data.folders import (MANIFEST, TOKENIZER_FILE, PreparedData, building_folder, folder_lock,
                                     load_prepared, write_manifest)
from scratchllm.data.shard_folder import ShardFolder
from scratchllm.data.shards import FORMAT_VERSION, write_shard
from scratchllm.data.tokenize import DOC_SEPARATOR, encode_document, encode_documents, needs_fit
from scratchllm.errors import DataError
from scratchllm.tokenizers import Tokenizer, build_tokenizer, normalize_spec

log = logging.getLogger(__name__)

SHARD_TOKENS = 100_000_000  # tokens per shard file


def cache_key(corpus: Corpus, tokenizer_spec: Mapping[str, Any] | str) -> str:
    return digest({"corpus": corpus.fingerprint(), "tokenizer": normalize_spec(tokenizer_spec),
                   "format": FORMAT_VERSION, "prepare": 1})[:16]


def _folder_name(corpus: Corpus, spec: dict[str, Any], key: str) -> str:
    kind = re.sub(r"[^a-z0-9]+", "", type(corpus).__name__.lower()) or "corpus"
    return f"{kind}-{spec['name']}-{key}"


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


def _reuse(folder: Path, warn: bool = True) -> PreparedData | None:
    """The complete cache at ``folder``, or None when there is none (or it is unreadable: it gets rebuilt)."""
    if not (folder / MANIFEST).is_file():
        return None
    try:
        return load_prepared(folder)
    except (OSError, KeyError, ValueError) as e:  # ValueError covers JSON and our DataError
        if warn:
            log.warning("cache %s is unreadable (%s); rebuilding it", folder, e)
        return None


def prepare_corpus(
    corpus: Corpus | ShardFolder,
    tokenizer_spec: Mapping[str, Any] | str,
    cache_dir: str | os.PathLike[str],
    *,
    shard_tokens: int = SHARD_TOKENS,
) -> PreparedData:
    """Tokenise ``corpus`` into shards under ``cache_dir`` (or reuse the shards a previous call built).

    A ``ShardFolder`` is already prepared: it is returned as it is, with its own tokenizer."""
    if isinstance(corpus, ShardFolder):
        return corpus.load()
    spec = normalize_spec(tokenizer_spec)
    folder = Path(cache_dir) / _folder_name(corpus, spec, cache_key(corpus, spec))
    found = _reuse(folder, warn=False)  # the common case, without touching the lock
    if found is not None:
        return found
    with folder_lock(folder, wait=True):
        # whoever held the lock before us may have built it while we waited
        return _reuse(folder) or _build(corpus, spec, folder, shard_tokens)


def _build(corpus: Corpus, spec: dict[str, Any], folder: Path, shard_tokens: int) -> PreparedData:
    """Tokenise ``corpus`` into ``folder`` (the caller holds the folder's lock)."""
    t0 = time.perf_counter()
    splits = corpus.splits()
    for split in SPLITS:
        docs = splits.get(split) or []
        if not any(docs):
            raise DataError(f"the {split} split of {corpus!r} is empty; add data or change "
                            "data.corpus.val_fraction / val_plays so both splits get some")
    train_docs = [d for d in splits["train"] if d]
    val_docs = [d for d in splits["val"] if d]
    # (the separator is part of the fitting text so a fitted vocabulary always holds it)
    fit_text = DOC_SEPARATOR.join(train_docs) + DOC_SEPARATOR if needs_fit(spec) else None
    tokenizer = build_tokenizer(spec, train_text=fit_text)
    del fit_text

    counts: dict[str, int] = {}
    with building_folder(folder) as tmp:  # an incomplete or unreadable leftover is replaced
        names: dict[str, list[str]] = {}
        for split, docs in (("train", train_docs), ("val", val_docs)):
            writer = ShardWriter(tmp, split, tokenizer, shard_tokens)
            for ids in encode_documents(tokenizer, docs, split):
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
