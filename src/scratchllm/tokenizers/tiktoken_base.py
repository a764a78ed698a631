"""What every byte-level BPE here shares (gpt2, cl100k, a BPE trained on your corpus): a ``tiktoken.Encoding``.

A byte-level BPE works on the UTF-8 bytes of the text, never on characters, so every string round-trips
exactly: emoji, CJK, combining marks and ``"\\r\\n"`` included, with no ``<unk>``. The tokenizers differ only
in where the merge table (``mergeable_ranks``: token bytes -> rank = id), the pre-tokenisation regex and the
special tokens come from; subclasses provide those through ``encoding()``.

- ``encode_ordinary`` is tiktoken's: the *text* ``"<|endoftext|>"`` inside a document is ordinary text, never
  the special id, so a corpus cannot inject document boundaries. Data preparation inserts the real ``eot_id``
  between documents itself. ``encode(text, allowed_special=...)`` (``base.py``) matches the special tokens it is
  asked to, the vocabulary's own and added ones alike, and encodes the text between them with ``encode_ordinary``:
  the same ids as tiktoken's ``encode(text, allowed_special=...)``.
- ``encode_ordinary_batch`` only uses tiktoken's thread pool when the texts are long: on many short texts the pool's
  overhead dominates (measured: ~5x slower than a plain loop on 50k one-line texts).
- ``decode`` rejects ids that name no token (out of range, or a hole between the merges and the special
  tokens, as cl100k has) with an ``InputError`` instead of tiktoken's bare ``KeyError``. A sequence that ends in
  the middle of a UTF-8 character (a sample cut short) decodes with U+FFFD for the missing part.
"""

from __future__ import annotations

import base64
import binascii
from abc import abstractmethod
from typing import Sequence

import tiktoken

from scratchllm.errors import DataError, InputError
from scratchllm.tokenizers.base import ENDOFTEXT, Tokenizer

__all__ = ["ENDOFTEXT", "PARALLEL_MIN_MEAN_CHARS", "TiktokenTokenizer", "format_ranks", "parse_ranks"]
PARALLEL_MIN_MEAN_CHARS = 4096  # encode_batch uses threads only when texts average at least this long


class TiktokenTokenizer(Tokenizer):
    """A ``Tokenizer`` over a ``tiktoken.Encoding``; subclasses implement ``encoding()`` (cached)."""

    @abstractmethod
    def encoding(self) -> tiktoken.Encoding:
        """The ``tiktoken.Encoding`` (built once, then reused)."""

    @property
    def base_vocab_size(self) -> int:
        return self.encoding().n_vocab

    @property
    def base_special_tokens(self) -> dict[str, int]:
        enc = self.encoding()
        return {name: enc.encode_single_token(name) for name in sorted(enc.special_tokens_set)}

    @property
    @abstractmethod
    def n_ranks(self) -> int:
        """Number of ordinary tokens (256 single bytes + the merges); their ids are ``0 .. n_ranks-1``. The
        special tokens come after them, possibly after a gap of unused ids (cl100k has one)."""

    def encode_ordinary(self, text: str) -> list[int]:
        return self.encoding().encode_ordinary(text)

    def encode_ordinary_batch(self, texts: list[str]) -> list[list[int]]:
        enc = self.encoding()
        if not texts or sum(map(len, texts)) < PARALLEL_MIN_MEAN_CHARS * len(texts):
            return [enc.encode_ordinary(t) for t in texts]
        return enc.encode_ordinary_batch(texts)

    def _check_ids(self, ids: list[int]) -> list[int]:
        n_ranks = self.n_ranks
        if not ids or (min(ids) >= 0 and max(ids) < n_ranks):
            return ids
        specials = set(self.base_special_tokens.values())
        for i in ids:
            if not (0 <= i < n_ranks or i in specials):
                raise InputError(f"token id {i} is outside the {self.name} vocabulary (0..{self.vocab_size - 1})"
                                 if not 0 <= i < self.vocab_size else
                                 f"token id {i} names no token in the {self.name} vocabulary (an unused id)")
        return ids

    def _base_decode(self, ids: list[int]) -> str:
        return self.encoding().decode(self._check_ids(ids), errors="replace")

    def _base_token_bytes(self, token_id: int) -> bytes:
        (i,) = self._check_ids([token_id])
        return self.encoding().decode_single_token_bytes(i)


def format_ranks(tokens: Sequence[bytes]) -> bytes:
    """tiktoken's ``.tiktoken`` text: one ``<base64 token> <rank>`` line per token, in rank order."""
    return b"".join(base64.b64encode(t) + b" " + str(r).encode() + b"\n" for r, t in enumerate(tokens))


def parse_ranks(data: bytes, source: str) -> list[bytes]:
    """The tokens of a ``.tiktoken`` file in rank order; ranks must be exactly ``0 .. n-1``.

    (tiktoken's own ``load_tiktoken_bpe`` also copies local files into its download cache and, without an
    expected hash, may hand back a stale copy of a file retrained in place, so we read the format ourselves.)
    """
    lines = [(n, line) for n, line in enumerate(data.splitlines(), 1) if line.strip()]
    tokens: list[bytes | None] = [None] * len(lines)
    for n, line in lines:
        try:
            b64, rank_text = line.split()
            token, rank = base64.b64decode(b64, validate=True), int(rank_text)
        except (ValueError, binascii.Error) as e:
            raise DataError(f"{source} line {n} is not '<base64 token> <rank>' ({e}); the file is corrupt, "
                            "train or copy it again") from e
        if not 0 <= rank < len(tokens) or tokens[rank] is not None:
            raise DataError(f"{source} line {n}: rank {rank} is repeated or outside 0..{len(tokens) - 1} "
                            "(ranks must be 0..n-1); the file is corrupt")
        tokens[rank] = token
    return tokens  # type: ignore[return-value]  # n lines, n distinct ranks in 0..n-1: every slot is filled
