"""Stage 6, quality: cheap heuristics in the spirit of Gopher (Rae et al. 2021) and C4 (Raffel et al. 2020).

Each rule catches one kind of text that is not prose worth learning from:

==============================  =====================================================  ======================
signal                          what it catches                                         default limit
==============================  =====================================================  ======================
words                           fragments, and giant dumps                              50 .. 100,000
mean word length                number soup (short), URLs / hashes / base64 (long)      3 .. 10 characters
symbol ratio                    markup, tables of ``|``, emoji walls                    <= 0.10 of characters
digit ratio                     tables of numbers, logs                                 <= 0.15
alphabetic words                tables, code                                            >= 80% of words
bullet / ellipsis lines         link lists, truncated teasers                           <= 90% / 30% of lines
lines without end punctuation   menus, navigation, tag clouds                           <= 85% of lines
duplicate lines / paragraphs    boilerplate repeated on a page                          <= 30%
top 2/3/4-gram share            keyword spam ("cheap watches cheap watches ...")        20% / 18% / 16%
duplicated 5..10-gram share     copy-pasted blocks                                      15% .. 10%
blocklist phrase                placeholder text ("lorem ipsum")                        none allowed
==============================  =====================================================  ======================

The shares of characters are over word characters, as in Gopher: for the most frequent n-gram, the characters
of all its occurrences; for duplicated n-grams, every word covered by an n-gram that occurs more than once
(each word counted once). They are computed with numpy: words become integer ids, n-grams rolling hashes.

Verse and plays break the line rules (lines end without punctuation, speaker names repeat): ``prepare=books``
loosens them. The first rule a document fails is its reason; the detail says by how much.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import numpy as np

from scratchllm.data.curation.config import QualityConfig

ORDINARY_PUNCT = set(".,;:!?'\"()-–—‘’“”«»…[]/")
TERMINAL = tuple(".!?…\"'”’»)")
BULLETS = ("-", "*", "•", "·", "‣", "◦", "▪", "●", "–")
_STRIP = "".join(sorted(ORDINARY_PUNCT))
_SPACE = re.compile(r"\s+")
_DIGIT = re.compile(r"\d+")
_SYMBOL = re.compile("[^\\w" + re.escape(_STRIP) + "]+")  # applied to text without spaces
_LETTER = re.compile(r"[^\W\d_]")
_PARAGRAPH = re.compile(r"\n\s*\n")
_MULT = np.uint64(0x9E3779B97F4A7C15)  # an odd 64-bit multiplier for rolling n-gram hashes


@dataclass
class QualitySignals:
    words: int
    mean_word_length: float
    symbol_ratio: float
    digit_ratio: float
    alpha_word_fraction: float
    bullet_line_fraction: float
    ellipsis_line_fraction: float
    no_terminal_punct_fraction: float
    duplicate_line_fraction: float
    duplicate_paragraph_fraction: float
    top_ngram_fraction: dict[int, float]
    duplicate_ngram_fraction: dict[int, float]


def _dup_fraction(items: list[str]) -> float:
    if not items:
        return 0.0
    return 1.0 - len(set(items)) / len(items)


def _ngram_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    h = np.zeros(ids.size - n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(n):
            h = h * _MULT + ids[j : ids.size - n + 1 + j]
    return h


def ngram_fractions(words: list[str], top_ns: list[int], dup_ns: list[int]) -> tuple[dict[int, float], dict[int, float]]:
    """Gopher's repetition signals: (share of word characters in the top n-gram, in duplicated n-grams)."""
    top: dict[int, float] = {}
    dup: dict[int, float] = {}
    if not words:
        return {n: 0.0 for n in top_ns}, {n: 0.0 for n in dup_ns}
    vocab: dict[str, int] = {}
    ids = np.fromiter((vocab.setdefault(w, len(vocab)) for w in words), dtype=np.uint64, count=len(words))
    lengths = np.fromiter((len(w) for w in words), dtype=np.int64, count=len(words))
    total = float(lengths.sum()) or 1.0
    csum = np.concatenate([[0], np.cumsum(lengths)])
    for n in top_ns:
        if len(words) < n:
            top[n] = 0.0
            continue
        h = _ngram_hashes(ids, n)
        uniq, first, counts = np.unique(h, return_index=True, return_counts=True)
        best = int(np.argmax(counts))
        if counts[best] < 2:
            top[n] = 0.0
            continue
        start = int(first[best])
        top[n] = min(1.0, float(counts[best]) * float(csum[start + n] - csum[start]) / total)
    for n in dup_ns:
        if len(words) < n:
            dup[n] = 0.0
            continue
        h = _ngram_hashes(ids, n)
        _, inverse, counts = np.unique(h, return_inverse=True, return_counts=True)
        repeated = counts[inverse] > 1
        if not repeated.any():
            dup[n] = 0.0
            continue
        cover = np.zeros(len(words) + 1, dtype=np.int64)  # difference array: +1 at start, -1 after the end
        starts = np.flatnonzero(repeated)
        np.add.at(cover, starts, 1)
        np.add.at(cover, starts + n, -1)
        covered = np.cumsum(cover[:-1]) > 0
        dup[n] = float(lengths[covered].sum()) / total
    return top, dup


def signals(text: str, cfg: QualityConfig) -> QualitySignals:
    """Every signal of the table in the module docstring."""
    words = [w for w in (w.strip(_STRIP) for w in text.lower().split()) if w]
    n_words = len(words)
    dense = _SPACE.sub("", text)  # counting by regex substitution runs in C, not one Python call per character
    n_chars = len(dense) or 1
    symbols = len(dense) - len(_SYMBOL.sub("", dense))
    digits = len(dense) - len(_DIGIT.sub("", dense))
    lines = [ln.strip() for ln in text.split("\n")]
    lines = [ln for ln in lines if ln]
    n_lines = len(lines) or 1
    paras = [p.strip() for p in _PARAGRAPH.split(text) if p.strip()]
    top, dup = ngram_fractions(words, sorted(cfg.max_top_ngram_fraction), sorted(cfg.max_duplicate_ngram_fraction))
    return QualitySignals(
        words=n_words,
        mean_word_length=(sum(map(len, words)) / n_words) if n_words else 0.0,
        symbol_ratio=symbols / n_chars,
        digit_ratio=digits / n_chars,
        alpha_word_fraction=(sum(1 for w in words if _LETTER.search(w)) / n_words) if n_words else 0.0,
        bullet_line_fraction=sum(1 for ln in lines if ln.startswith(BULLETS)) / n_lines,
        ellipsis_line_fraction=sum(1 for ln in lines if ln.endswith(("...", "…"))) / n_lines,
        no_terminal_punct_fraction=sum(1 for ln in lines if not _terminal(ln)) / n_lines,
        duplicate_line_fraction=_dup_fraction(lines),
        duplicate_paragraph_fraction=_dup_fraction(paras),
        top_ngram_fraction=top,
        duplicate_ngram_fraction=dup,
    )


def _terminal(line: str) -> bool:
    if line.endswith(TERMINAL):
        return True
    last = line[-1]
    return unicodedata.category(last) == "Po" and last not in ",;:-"  # other scripts' full stops (。।)


def verdict(text: str, cfg: QualityConfig) -> tuple[str, str] | None:
    """``(reason, detail)`` for the first rule ``text`` fails, or None when it passes them all."""
    lowered = text.lower()
    for phrase in cfg.blocklist:
        if phrase and phrase in lowered:
            return "blocklist", repr(phrase)
    s = signals(text, cfg)
    checks = [
        ("too_few_words", s.words < cfg.min_words, f"{s.words} < {cfg.min_words}"),
        ("too_many_words", s.words > cfg.max_words, f"{s.words} > {cfg.max_words}"),
        ("mean_word_length", not cfg.min_mean_word_length <= s.mean_word_length <= cfg.max_mean_word_length,
         f"{s.mean_word_length:.2f} outside [{cfg.min_mean_word_length}, {cfg.max_mean_word_length}]"),
        ("symbol_ratio", s.symbol_ratio > cfg.max_symbol_ratio, f"{s.symbol_ratio:.3f} > {cfg.max_symbol_ratio}"),
        ("digit_ratio", s.digit_ratio > cfg.max_digit_ratio, f"{s.digit_ratio:.3f} > {cfg.max_digit_ratio}"),
        ("alpha_words", s.alpha_word_fraction < cfg.min_alpha_word_fraction,
         f"{s.alpha_word_fraction:.3f} < {cfg.min_alpha_word_fraction}"),
    ]
    for n, limit in sorted(cfg.max_top_ngram_fraction.items()):
        v = s.top_ngram_fraction.get(n, 0.0)
        checks.append((f"top_{n}gram", v > limit, f"{v:.3f} > {limit}"))
    for n, limit in sorted(cfg.max_duplicate_ngram_fraction.items()):
        v = s.duplicate_ngram_fraction.get(n, 0.0)
        checks.append((f"duplicate_{n}grams", v > limit, f"{v:.3f} > {limit}"))
    checks += [
        ("bullet_lines", s.bullet_line_fraction > cfg.max_bullet_line_fraction,
         f"{s.bullet_line_fraction:.3f} > {cfg.max_bullet_line_fraction}"),
        ("ellipsis_lines", s.ellipsis_line_fraction > cfg.max_ellipsis_line_fraction,
         f"{s.ellipsis_line_fraction:.3f} > {cfg.max_ellipsis_line_fraction}"),
        ("no_terminal_punctuation", s.no_terminal_punct_fraction > cfg.max_no_terminal_punct_fraction,
         f"{s.no_terminal_punct_fraction:.3f} > {cfg.max_no_terminal_punct_fraction}"),
        ("duplicate_lines", s.duplicate_line_fraction > cfg.max_duplicate_line_fraction,
         f"{s.duplicate_line_fraction:.3f} > {cfg.max_duplicate_line_fraction}"),
        ("duplicate_paragraphs", s.duplicate_paragraph_fraction > cfg.max_duplicate_paragraph_fraction,
         f"{s.duplicate_paragraph_fraction:.3f} > {cfg.max_duplicate_paragraph_fraction}"),
    ]
    for reason, failed, detail in checks:
        if failed:
            return reason, detail
    return None


def verdict_batch(texts: list[str], cfg: QualityConfig) -> list[tuple[str, str] | None]:
    """Worker entry point: ``verdict`` over a chunk of documents."""
    return [verdict(t, cfg) for t in texts]
