"""Train a byte-level BPE on your own text with ``rustbpe``; the result is a ``BPETokenizer`` (tiktoken encodes).

Training BPE, in one paragraph: cut the text into pieces with the split pattern (GPT-4's by default: words
with their leading space, numbers of up to three digits, punctuation runs, newline runs), count how often
each distinct piece occurs, and view each piece as a sequence of its UTF-8 bytes. Then repeat until the
vocabulary is full: find the adjacent pair of tokens that occurs most often across all pieces (weighted by
piece counts), make it a new token with the next rank, and replace the pair everywhere. Merges never cross
piece boundaries, which is why the pattern matters as much as the vocabulary size.

``rustbpe`` does exactly that in Rust, counting pieces in parallel from a streaming iterator, and hands back
the ranks in tiktoken's form, so encoding is tiktoken's (fast, and identical to the way the merges were
learnt). The vocabulary size you ask for *includes* the special tokens: ``vocab_size=4096`` with one special
token learns 4096 - 256 - 1 = 3839 merges. On a small text there may be fewer pairs than that left to
merge; training then stops early and the vocabulary is smaller (reported, not an error).
"""

from __future__ import annotations

import importlib.metadata
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from scratchllm.errors import ConfigError, DataError, ScratchLLMError
from scratchllm.tokenizers.bpe import GPT4_PATTERN, BPETokenizer
from scratchllm.tokenizers.text_input import CHUNK_CHARS, ReadStats, iter_texts
from scratchllm.tokenizers.tiktoken_base import ENDOFTEXT

log = logging.getLogger(__name__)

BUFFER_CHUNKS = 256  # chunks rustbpe holds at once (x CHUNK_CHARS: ~16M characters in memory)
MAX_VOCAB = 1 << 20


@dataclass
class BPETrainConfig:
    """How to train. ``vocab_size`` counts the 256 byte tokens, the merges and the special tokens."""

    vocab_size: int = 32768
    special_tokens: list[str] = field(default_factory=lambda: [ENDOFTEXT])
    pattern: str = GPT4_PATTERN
    name: str = "bpe"
    buffer_chunks: int = BUFFER_CHUNKS

    def __post_init__(self) -> None:
        if isinstance(self.special_tokens, str):
            self.special_tokens = [self.special_tokens]
        specials = [str(s) for s in self.special_tokens]
        # <|endoftext|> is always reserved (it separates documents in the shards) and comes first
        self.special_tokens = [ENDOFTEXT] + [s for s in specials if s != ENDOFTEXT]
        if len(set(self.special_tokens)) != len(self.special_tokens):
            raise ConfigError(f"special_tokens repeats a token: {specials}")
        if any(not s for s in self.special_tokens):
            raise ConfigError("special_tokens holds an empty string; remove it")
        try:
            self.vocab_size = int(self.vocab_size)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"vocab_size={self.vocab_size!r} is not an integer, e.g. vocab_size=32768") from e
        low = 256 + len(self.special_tokens)
        if not low <= self.vocab_size <= MAX_VOCAB:
            raise ConfigError(f"vocab_size={self.vocab_size} must be between {low} (256 bytes + "
                              f"{len(self.special_tokens)} special) and {MAX_VOCAB}; 32768-131072 suits real corpora")
        if not str(self.pattern):
            raise ConfigError("pattern is empty; leave it unset for GPT-4's split pattern")
        if int(self.buffer_chunks) < 1:
            raise ConfigError(f"buffer_chunks={self.buffer_chunks} must be at least 1")

    @property
    def n_merges(self) -> int:
        return self.vocab_size - 256 - len(self.special_tokens)


def _rustbpe() -> Any:
    try:
        import rustbpe
    except ImportError as e:
        raise ConfigError("training a BPE needs the 'rustbpe' package; pip install rustbpe") from e
    return rustbpe


def rustbpe_version() -> str:
    try:
        return importlib.metadata.version("rustbpe")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def train_bpe(texts: Iterable[str], config: BPETrainConfig | None = None) -> BPETokenizer:
    """Learn merges from ``texts`` (any iterable of strings, consumed once, e.g. ``iter_texts(...)``)."""
    config = config or BPETrainConfig()
    rustbpe = _rustbpe()
    seen = {"chars": 0}

    def counted() -> Iterator[str]:
        for text in texts:
            if text:
                seen["chars"] += len(text)
                yield text

    trainer = rustbpe.Tokenizer()
    try:
        trainer.train_from_iterator(counted(), 256 + config.n_merges, buffer_size=int(config.buffer_chunks),
                                    pattern=config.pattern)
    except ScratchLLMError:  # from the text iterator (e.g. an unreadable file): already names the fix
        raise
    except UnicodeEncodeError as e:
        raise DataError(f"training text holds characters that are not valid Unicode text ({e}); "
                        "clean the input (lone surrogates)") from e
    except ValueError as e:
        if "invalid regex" in str(e).lower():
            raise ConfigError(f"split pattern {config.pattern!r} does not compile ({e})") from e
        raise
    if seen["chars"] == 0:
        raise DataError("the training text is empty; check input=")
    ranked = sorted(trainer.get_mergeable_ranks(), key=lambda tr: tr[1])
    if [r for _, r in ranked] != list(range(len(ranked))):
        raise DataError("rustbpe returned ranks that are not 0..n-1; reinstall rustbpe")
    tokens = [bytes(t) for t, _ in ranked]
    if len(tokens) - 256 < config.n_merges:
        log.warning("the text ran out of pairs to merge after %d of %d merges; the vocabulary has %d tokens, "
                    "not %d (use more text or a smaller vocab_size)", len(tokens) - 256, config.n_merges,
                    len(tokens) + len(config.special_tokens), config.vocab_size)
    return BPETokenizer(tokens, pattern=config.pattern, special_tokens=config.special_tokens, label=config.name)


@dataclass
class TrainResult:
    """A trained tokenizer, where it was saved and what it was trained on."""

    tokenizer: BPETokenizer
    output: Path
    stats: ReadStats
    seconds: float
    summary: dict[str, Any]


def train_bpe_files(
    inputs: str | Sequence[str],
    output: str | Path,
    config: BPETrainConfig | None = None,
    *,
    text_field: str = "text",
    max_chars: int = 0,
    chunk_chars: int = CHUNK_CHARS,
) -> TrainResult:
    """Stream ``inputs`` (files, folders, globs) into ``train_bpe`` and save the result to ``output``."""
    config = config or BPETrainConfig()
    if int(max_chars) < 0:
        raise ConfigError(f"max_chars={max_chars} must be 0 (all the text) or positive")
    stats = ReadStats()
    texts = iter_texts(inputs, text_field=text_field, chunk_chars=chunk_chars, max_chars=int(max_chars), stats=stats)
    t0 = time.perf_counter()
    tokenizer = train_bpe(texts, config)
    seconds = time.perf_counter() - t0
    summary = {
        "inputs": [str(i) for i in ([inputs] if isinstance(inputs, (str, Path)) else inputs)],
        "files": stats.files,
        "documents": stats.documents,
        "chars": stats.chars,
        "bytes": stats.bytes,
        "replaced_chars": stats.replaced,
        "skipped_jsonl_lines": stats.skipped_lines,
        "requested_vocab_size": config.vocab_size,
        "vocab_size": tokenizer.vocab_size,
        "merges": tokenizer.n_ranks - 256,
        "seconds": round(seconds, 3),
        "trainer": f"rustbpe {rustbpe_version()}",
    }
    out = tokenizer.save_dir(output, training=summary)
    return TrainResult(tokenizer, out, stats, seconds, summary)
