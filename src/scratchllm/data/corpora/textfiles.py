"""``TextFiles``: your own text. Files, folders (every ``*.txt`` below them) and glob patterns.

Each file is one document. Validation takes whole files from the end of the (sorted) list, so no
document is split between train and val; with a single file there is nothing to hold out whole, so its
last ``val_fraction`` of characters is used instead.

Bytes that are not valid in ``encoding`` are replaced by U+FFFD rather than stopping the run; how many were
replaced, per file, is logged and kept in ``decode_errors`` so a wrongly guessed encoding is noticed. A file
that is not text at all (NUL bytes, mostly undecodable) is skipped with a warning, and refused when no text
file remains: the rule shared with the tokenizer trainer and ``prepare`` (``scratchllm.textio``).

The fingerprint uses each file's path, size and modification time (like ``make``), so a big corpus is not
re-read just to find out that nothing changed.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from scratchllm.data.corpora.base import check_fraction, digest
from scratchllm.errors import DataError
from scratchllm.textio import SNIFF_BYTES, BinarySkips, binary_reason, decode_counting, expand_paths

log = logging.getLogger(__name__)

ENCODING_HINT = "data.corpus.encoding"
BINARY_FIX = "pass text files, or add data.corpus.encoding=<encoding> if it is text in another encoding"


def resolve_paths(patterns: list[str] | str) -> list[Path]:
    """Files named by ``patterns`` (file, folder -> recursive ``*.txt``, or glob), in order, without repeats."""
    return expand_paths(patterns, accept=lambda q: q.suffix == ".txt", kinds=".txt", hint="data.corpus.paths")


class TextFiles:
    """Local text files as a corpus."""

    def __init__(self, paths: list[str] | str, val_fraction: float = 0.1, encoding: str = "utf-8") -> None:
        self.paths = [str(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else list(paths))]
        self.val_fraction = check_fraction("data.corpus.val_fraction", val_fraction)
        self.encoding = encoding
        self.decode_errors: dict[str, int] = {}

    def files(self) -> list[Path]:
        return resolve_paths(self.paths)

    def splits(self) -> dict[str, list[str]]:
        files = self.files()
        docs = []
        binary = BinarySkips(option="data.path", fix=BINARY_FIX)
        self.decode_errors = {}
        for f in files:
            raw = f.read_bytes()
            reason = binary_reason(raw[:SNIFF_BYTES], self.encoding, hint=ENCODING_HINT)
            if reason:
                binary.add(f, reason)
                continue
            binary.text()
            text, bad = decode_counting(raw, self.encoding, hint=ENCODING_HINT)
            if bad:
                self.decode_errors[str(f)] = bad
                log.warning("%s: %d undecodable byte sequence(s) replaced with U+FFFD (%s=%s)",
                            f, bad, ENCODING_HINT, self.encoding)
            docs.append(text)
        binary.check()
        if not any(docs):
            raise DataError(f"all {len(files)} input file(s) are empty; check data.corpus.paths")
        if len(docs) == 1:
            text = docs[0]
            cut = int(len(text) * (1.0 - self.val_fraction))
            return {"train": [text[:cut]], "val": [text[cut:]]}
        n_val = min(len(docs) - 1, max(1, round(len(docs) * self.val_fraction)))
        return {"train": docs[:-n_val], "val": docs[-n_val:]}

    def fingerprint(self) -> str:
        stats = []
        for f in self.files():
            st = f.stat()
            stats.append([str(f.resolve()), st.st_size, st.st_mtime_ns])
        # "reader" changes when the same files are read differently: 2 = binary files skipped or refused, so
        # shards an earlier version built out of a binary file are not reused
        return digest({"corpus": "text_files", "files": stats, "val_fraction": self.val_fraction,
                       "encoding": self.encoding, "reader": 2})

    def __repr__(self) -> str:
        return f"TextFiles(paths={self.paths!r}, val_fraction={self.val_fraction})"
