"""Finding and decoding input text, shared by every command that reads text (corpora for training, the tokenizer
trainer, the curation pipeline): one rule for "a file, a folder or a glob", one for "is this file text at all",
and counted decoding.

Binary files, one policy everywhere: a file whose first bytes hold NUL bytes (text has them only in UTF-16/32)
or are mostly undecodable is not read. Among other inputs it is skipped with a warning naming it (a folder or
glob often sweeps up a stray model or archive, and the rest of the text is still worth reading); only when no
text file remains is it an error, naming the file. ``prepare`` applies the same rule (a skipped file is a
``binary_file`` removal in its report, and "no document survived" is its error). Text in the wrong encoding with
a few bad bytes is still text: those bytes become U+FFFD and are counted, and the caller warns.

It lives at the top of the package because both ``data/`` and ``tokenizers/`` read text and ``data/`` imports
``tokenizers/``.
"""

from __future__ import annotations

import codecs
import glob
import json
import logging
import os
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Sequence

from scratchllm.errors import ConfigError, DataError

log = logging.getLogger(__name__)

SNIFF_BYTES = 8192  # the leading bytes that decide whether a file is text
# A text file in a mistaken encoding has a few percent of its bytes undecodable (Latin-1 accents read as UTF-8);
# random or compressed bytes about half. A text in an unrelated script (cp1251 read as UTF-8) is mostly
# undecodable too: refusing it, with the hint to set the encoding, beats training on U+FFFD.
BINARY_SHARE = 0.3
BINARY_MIN_BAD = 16  # fewer undecodable sequences than this are a handful of bad bytes, even in a tiny file


def expand_paths(
    patterns: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    accept: Callable[[Path], bool],
    kinds: str,
    hint: str,
) -> list[Path]:
    """The files named by ``patterns``, in order and each once (by resolved path).

    Each pattern is a file (taken as it is), a folder (searched recursively for files ``accept`` takes; ``kinds``
    describes them in messages) or a glob (``**`` recurses). ``hint`` names the option a user should fix, e.g.
    ``data.corpus.paths``. A pattern that finds nothing is a ``DataError``.
    """
    items = [patterns] if isinstance(patterns, (str, os.PathLike)) else list(patterns)
    if not items:
        raise DataError(f"no input given; set {hint}")
    found: list[Path] = []
    for item in map(str, items):
        expanded = os.path.expanduser(os.path.expandvars(item))
        path = Path(expanded)
        if path.is_file():
            matches = [path]
        elif path.is_dir():
            matches = sorted(q for q in path.rglob("*") if q.is_file() and accept(q))
            if not matches:
                raise DataError(f"folder '{item}' holds no {kinds} files; add some or check {hint}")
        else:
            matches = sorted(Path(m) for m in glob.glob(expanded, recursive=True) if Path(m).is_file())
            if not matches:
                raise DataError(f"no input files match '{item}'; check {hint}")
        found.extend(matches)
    seen: set[Path] = set()
    unique: list[Path] = []
    for f in found:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def _replaced(raw: bytes, text: str, encoding: str) -> int:
    """U+FFFD characters in ``text`` (``raw`` decoded with errors="replace") that were not in ``raw`` already."""
    try:
        genuine = raw.count("\ufffd".encode(encoding))
    except (UnicodeEncodeError, LookupError):
        genuine = 0
    return max(0, text.count("\ufffd") - genuine)


def decode_counting(raw: bytes, encoding: str, *, hint: str) -> tuple[str, int]:
    """Text of ``raw`` and the number of undecodable byte sequences that became U+FFFD (counted, never fatal).

    U+FFFD characters that were genuinely in the input are not counted. An unknown encoding is a ``ConfigError``
    naming ``hint`` (the option that sets it)."""
    try:
        return raw.decode(encoding), 0
    except UnicodeDecodeError:
        text = raw.decode(encoding, errors="replace")
        return text, max(1, _replaced(raw, text, encoding))
    except LookupError as e:
        raise ConfigError(f"unknown text encoding {encoding!r}; set {hint} (e.g. utf-8)") from e


def read_head(f: IO[bytes]) -> bytes:
    """Up to ``SNIFF_BYTES`` leading bytes of an open buffered (or gzip) file, without consuming them."""
    return f.peek(SNIFF_BYTES)[:SNIFF_BYTES]


def binary_reason(head: bytes, encoding: str, *, hint: str) -> str | None:
    """Why a file that starts with ``head`` (its first ``SNIFF_BYTES``) is not text in ``encoding``, e.g.
    ``"NUL bytes"`` or ``"38% undecodable as utf-8"``; None when it looks like text. ``hint`` names the option
    that sets the encoding (an unknown one is a ``ConfigError``)."""
    try:
        codec = codecs.lookup(encoding)
    except LookupError as e:
        raise ConfigError(f"unknown text encoding {encoding!r}; set {hint} (e.g. utf-8)") from e
    if b"\0" in head and not codec.name.startswith(("utf-16", "utf-32")):
        return "NUL bytes"
    # incremental, not final: a character cut in two by the end of the head is not an error
    text = codec.incrementaldecoder(errors="replace").decode(head)
    bad = _replaced(head, text, encoding)
    if bad >= BINARY_MIN_BAD and bad > BINARY_SHARE * len(head):
        return f"{bad / len(head):.0%} undecodable as {codec.name}"
    return None


def binary_message(path: str | os.PathLike[str], reason: str) -> str:
    return f"{path} looks binary ({reason}), not text"


def skip_binary(path: str | os.PathLike[str], reason: str, fix: str) -> None:
    """The warning for a binary file that is skipped among other inputs (see the module docstring)."""
    log.warning("%s: skipped; %s", binary_message(path, reason), fix)


class BinarySkips:
    """The binary files met while reading a command's inputs, handled by the one policy (module docstring).

    ``add`` each binary file, call ``text`` for each text file, then ``check`` once all are read. A skipped file
    is warned about only once a text file shows the command goes on, so that when nothing textual remains the
    user sees one line, the error, not a warning too."""

    def __init__(self, *, option: str, fix: str) -> None:
        self.option, self.fix = option, fix  # the option that names the inputs; how to fix them
        self.files: list[tuple[str | os.PathLike[str], str]] = []
        self.text_seen = False
        self._warned = 0

    def add(self, path: str | os.PathLike[str], reason: str) -> None:
        self.files.append((path, reason))
        if self.text_seen:
            self._warn()

    def text(self) -> None:
        self.text_seen = True
        self._warn()

    def _warn(self) -> None:
        for path, reason in self.files[self._warned:]:
            skip_binary(path, reason, self.fix)
        self._warned = len(self.files)

    def check(self) -> None:
        """A ``DataError`` when every input was binary: names the first, counts the others."""
        if self.files and not self.text_seen:
            path, reason = self.files[0]
            others = f", and so do the other {len(self.files) - 1} input file(s)" if len(self.files) > 1 else ""
            raise DataError(f"{self.option}: {binary_message(path, reason)}{others}; {self.fix}")


def read_jsonl(path: Path, hint: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, object)`` for each non-blank line of a JSONL file; ``where`` is ``file:line`` for messages."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{where}: not valid JSON ({err.msg} at column {err.colno}); fix the line or "
                                f"remove it from {hint}") from None
            if not isinstance(obj, dict):
                raise DataError(f"{where}: each line must be a JSON object, got {type(obj).__name__}")
            yield where, obj
