"""Finding and decoding input text: one rule for "a file, a folder or a glob", shared by every command that reads
text (corpora for training, the tokenizer trainer, the curation pipeline).

It lives at the top of the package because both ``data/`` and ``tokenizers/`` read text and ``data/`` imports
``tokenizers/``.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Callable, Sequence

from scratchllm.errors import ConfigError, DataError


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


def decode_counting(raw: bytes, encoding: str, *, hint: str) -> tuple[str, int]:
    """Text of ``raw`` and the number of undecodable byte sequences that became U+FFFD (counted, never fatal).

    U+FFFD characters that were genuinely in the input are not counted. An unknown encoding is a ``ConfigError``
    naming ``hint`` (the option that sets it)."""
    try:
        return raw.decode(encoding), 0
    except UnicodeDecodeError:
        text = raw.decode(encoding, errors="replace")
        try:
            genuine = raw.count("\ufffd".encode(encoding))
        except (UnicodeEncodeError, LookupError):
            genuine = 0
        return text, max(1, text.count("\ufffd") - genuine)
    except LookupError as e:
        raise ConfigError(f"unknown text encoding {encoding!r}; set {hint} (e.g. utf-8)") from e
