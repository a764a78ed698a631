"""Stream training text for a tokenizer out of files, folders and globs, in bounded memory.

BPE training only needs to *see* the text once, piece by piece, so a corpus of many gigabytes need never be in
memory: ``iter_texts`` yields chunks of at most about ``chunk_chars`` characters, cut after a line end.

What is read:

- a file, whatever its extension: ``.jsonl`` (one JSON object per line, its ``text_field``, default ``"text"``)
  as documents, anything else as UTF-8 text (undecodable bytes become U+FFFD and are counted);
- a folder: every ``.txt``, ``.md`` and ``.jsonl`` file below it (also ``.gz`` compressed), sorted;
- a glob (``data/**/*.txt``): the files it matches, sorted.

A file that is not UTF-8 text at all (NUL bytes, or mostly undecodable, in its first bytes after any ``.gz`` is
unpacked) is skipped with a warning, and refused when no text file remains: the rule training and ``prepare``
share (``scratchllm.textio``).

Chunks are cut only after a newline, so a word is never split between two chunks. Cutting does change how
*whitespace* around that newline is grouped into pieces (a blank-line run may be counted as two shorter runs),
which moves a few merge counts by a little and nothing else.
"""

from __future__ import annotations

import gzip
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterator, Sequence

from scratchllm.errors import DataError
from scratchllm.textio import BinarySkips, binary_reason, expand_paths, read_head

TEXT_SUFFIXES = (".txt", ".md", ".jsonl")
CHUNK_CHARS = 1 << 16  # ~64k characters per chunk (a long line is yielded whole)
# the trainer has no encoding option: it reads UTF-8
BINARY_FIX = "pass text files (UTF-8; convert text in another encoding first, e.g. with iconv)"


@dataclass
class ReadStats:
    """What ``iter_texts`` read (filled in while it runs)."""

    files: int = 0
    documents: int = 0  # files for plain text, lines for jsonl
    chars: int = 0
    bytes: int = 0  # UTF-8 bytes of the text yielded
    replaced: int = 0  # U+FFFD characters from undecodable bytes (approximate when the file has some genuinely)
    skipped_lines: int = 0  # jsonl lines without a string text field
    paths: list[str] = field(default_factory=list)
    skipped_binary: list[str] = field(default_factory=list)  # files that are not text (not counted in ``files``)


def _base_suffix(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return os.path.splitext(name)[1]


def resolve_inputs(inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The files named by ``inputs`` (files, folders, globs), in order, each once."""
    return expand_paths(
        inputs,
        accept=lambda q: _base_suffix(q) in TEXT_SUFFIXES,
        kinds=", ".join(TEXT_SUFFIXES),
        hint="input=",
    )


def _open_bytes(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _binary_reason(path: Path) -> str | None:
    """Why ``path`` is not UTF-8 text, judged on its first bytes (after a ``.gz`` is unpacked); None for text."""
    with _open_bytes(path) as raw:
        return binary_reason(read_head(raw), "utf-8", hint="input=")


def _open_text(path: Path) -> IO[str]:
    return io.TextIOWrapper(_open_bytes(path), encoding="utf-8", errors="replace", newline="")  # keep "\r\n"


def _plain_chunks(f: IO[str], chunk_chars: int) -> Iterator[str]:
    buf: list[str] = []
    size = 0
    for line in f:  # a line (up to its newline) is the unit; a huge line is yielded whole
        buf.append(line)
        size += len(line)
        if size >= chunk_chars:
            yield "".join(buf)
            buf, size = [], 0
    if buf:
        yield "".join(buf)


def _jsonl_docs(f: IO[str], path: Path, text_field: str, stats: ReadStats) -> Iterator[str]:
    for n, line in enumerate(f, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path} line {n} is not JSON ({e.msg}); fix or remove that line") from e
        text = obj.get(text_field) if isinstance(obj, dict) else None
        if not isinstance(text, str):
            stats.skipped_lines += 1
            continue
        yield text


def iter_texts(
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    text_field: str = "text",
    chunk_chars: int = CHUNK_CHARS,
    max_chars: int = 0,
    stats: ReadStats | None = None,
) -> Iterator[str]:
    """Text chunks of every input file, in order. ``max_chars`` > 0 stops after about that many characters.
    ``stats`` (optional) is filled in as the chunks are read."""
    stats = stats if stats is not None else ReadStats()
    paths = resolve_inputs(inputs)
    binary = BinarySkips(option="input", fix=BINARY_FIX)
    for path in paths:
        jsonl = _base_suffix(path) == ".jsonl"
        try:
            reason = _binary_reason(path)
            if reason:
                binary.add(path, reason)
                stats.skipped_binary.append(str(path))
                continue
            binary.text()
            stats.files += 1
            stats.paths.append(str(path))
            with _open_text(path) as f:
                pieces = _jsonl_docs(f, path, text_field, stats) if jsonl else _plain_chunks(f, chunk_chars)
                if not jsonl:
                    stats.documents += 1
                for piece in pieces:
                    if jsonl:
                        stats.documents += 1
                    if not piece:
                        continue
                    if max_chars and stats.chars + len(piece) > max_chars:
                        piece = piece[: max_chars - stats.chars]
                    try:
                        n_bytes = len(piece.encode("utf-8"))
                    except UnicodeEncodeError:  # lone surrogates (JSON "\ud800" escapes) are not text: U+FFFD
                        piece = piece.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
                        n_bytes = len(piece.encode("utf-8"))
                    stats.chars += len(piece)
                    stats.bytes += n_bytes
                    stats.replaced += piece.count("\ufffd")
                    if piece:
                        yield piece
                    if max_chars and stats.chars >= max_chars:
                        return
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            raise DataError(f"cannot read {path} ({e}); check the file") from e
    binary.check()
