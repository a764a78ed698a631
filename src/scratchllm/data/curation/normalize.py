"""Stage 2, normalise: one canonical spelling of the same text, so later stages compare like with like.

- Unicode NFC: "é" typed as one code point or as "e" + combining accent becomes the same string (NFKC also
  folds compatibility forms such as full-width letters and ligatures; it changes meaning more often).
- control characters: C0/C1 controls other than tab and newline, the byte-order mark and zero-width spaces are
  invisible noise that splits words and defeats exact dedup; they are removed. ``\\r\\n`` and ``\\r`` become ``\\n``.
- whitespace: exotic spaces (no-break, em, ideographic ...) become a plain space, spaces at line ends and runs of
  blank lines go (``trim``); ``collapse`` also squeezes runs of spaces inside a line but keeps indentation, which
  carries meaning in code and verse.

A document that is empty after this is removed (reason ``empty``).
"""

from __future__ import annotations

import re
import unicodedata

from scratchllm.data.curation.config import NormalizeConfig

_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufeff\u200b\u2060]")
_SPACES = re.compile("[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000\t\x0b\x0c]")
_TRAILING = re.compile(r"[ \t]+$", re.MULTILINE)
_BLANK_RUNS = re.compile(r"\n{3,}")
_INNER_RUNS = re.compile(r"(?<=\S) {2,}")


def normalize_text(text: str, cfg: NormalizeConfig) -> str:
    """``text`` in canonical form (see the module docstring)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if cfg.form != "none":
        text = unicodedata.normalize(cfg.form, text)
    if cfg.strip_control:
        text = _CONTROL.sub("", text)
    if cfg.whitespace != "none":
        keep_tabs = cfg.whitespace == "trim"
        text = _SPACES.sub(lambda m: m.group() if keep_tabs and m.group() == "\t" else " ", text)
        if cfg.whitespace == "collapse":
            text = _INNER_RUNS.sub(" ", text)
        text = _TRAILING.sub("", text)
        text = _BLANK_RUNS.sub("\n\n", text).strip("\n")
        if not text.strip():
            text = ""
    return text


def normalize_batch(texts: list[str], cfg: NormalizeConfig) -> list[str]:
    """Worker entry point: ``normalize_text`` over a chunk of documents."""
    return [normalize_text(t, cfg) for t in texts]
