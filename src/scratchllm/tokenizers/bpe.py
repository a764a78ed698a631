"""``BPETokenizer``: a byte-level BPE trained on *your* corpus (see ``train_bpe.py``), encoded by tiktoken.

A trained BPE is nothing but three things, and that is all we store:

- the tokens in rank order (rank = id). Ids 0..255 are the 256 single bytes, so any text round-trips; each
  later token is a merge of two earlier ones, and encoding applies merges lowest rank first;
- the pre-tokenisation regex (default: GPT-4's), which cuts text into pieces that merges never cross;
- the special tokens (at least ``<|endoftext|>``), with ids after the merges. Special tokens added later
  (``add_special_tokens``, e.g. chat markers) come after those; they are stored beside the trained vocabulary
  (``added_special_tokens``), outside its fingerprint, so the trained folder it came from still matches.

On disk (``python -m scratchllm.tokenizer train ... output=DIR``) that is tiktoken's own format, readable by any
tiktoken user::

    DIR/vocab.tiktoken   one "<base64 token> <rank>" line per token
    DIR/bpe.json         {"format": "scratchllm-bpe", "name", "pattern", "special_tokens", "vocab_size",
                          "fingerprint", "training": {...how it was trained}}

In a training checkpoint, ``to_dict()`` embeds the tokens themselves (base64, space-separated: ~0.4 MB for 32k
tokens) rather than the folder's path: the checkpoint alone can decode its samples even after the folder is
moved or deleted. ``fingerprint`` (sha256 of tokens, pattern and special tokens) is checked whenever a
tokenizer is rebuilt, so a corrupted or edited copy is an error, not silently different ids.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import tiktoken

from scratchllm.errors import ConfigError, DataError
from scratchllm.tokenizers.cl100k import CL100K_PATTERN
from scratchllm.tokenizers.base import ADDED_KEY, ENDOFTEXT
from scratchllm.tokenizers.tiktoken_base import TiktokenTokenizer, format_ranks, parse_ranks

GPT4_PATTERN = CL100K_PATTERN  # the default split pattern for training
RANKS_FILE = "vocab.tiktoken"
META_FILE = "bpe.json"
FORMAT = "scratchllm-bpe"
FORMAT_VERSION = 1


def is_bpe_dir(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder written by ``BPETokenizer.save_dir`` (it has ``bpe.json``)."""
    return (Path(path) / META_FILE).is_file()


def fingerprint(tokens: Sequence[bytes], pattern: str, special_tokens: Mapping[str, int]) -> str:
    """sha256 over everything that decides the ids: the rank-ordered tokens, the pattern, the special tokens."""
    h = hashlib.sha256(format_ranks(tokens))
    h.update(b"\0" + pattern.encode("utf-8") + b"\0")
    h.update(json.dumps(dict(sorted(special_tokens.items(), key=lambda kv: kv[1])), ensure_ascii=False).encode())
    return h.hexdigest()


def _special_ids(special_tokens: Mapping[str, int] | Sequence[str], n_ranks: int) -> dict[str, int]:
    if isinstance(special_tokens, Mapping):
        specials = {str(k): int(v) for k, v in special_tokens.items()}
    else:
        names = [str(s) for s in special_tokens]
        if len(set(names)) != len(names):
            raise ConfigError(f"special tokens must not repeat, got {names}")
        specials = {s: n_ranks + i for i, s in enumerate(names)}
    if any(not s for s in specials):
        raise ConfigError("a special token cannot be the empty string")
    ids = list(specials.values())
    if len(set(ids)) != len(ids) or any(i < n_ranks for i in ids):
        raise DataError(f"special token ids {ids} must be distinct and >= {n_ranks} (after the merges)")
    return specials


class BPETokenizer(TiktokenTokenizer):
    """A byte-level BPE: ``tokens`` in rank order, a split ``pattern``, ``special_tokens`` (names in id order, or
    a name -> id mapping). ``label`` is a human-readable name (shown by ``show`` and stored in checkpoints)."""

    name = "bpe"

    def __init__(
        self,
        tokens: Sequence[bytes],
        pattern: str = GPT4_PATTERN,
        special_tokens: Mapping[str, int] | Sequence[str] = (ENDOFTEXT,),
        label: str = "bpe",
    ) -> None:
        super().__init__()
        self.tokens = [bytes(t) for t in tokens]
        singles = {t for t in self.tokens if len(t) == 1}
        if len(singles) != 256:
            raise DataError(f"a byte-level BPE needs all 256 single-byte tokens, this one has {len(singles)}; "
                            "the vocabulary file is corrupt or not byte-level")
        if len(set(self.tokens)) != len(self.tokens):
            raise DataError("the BPE vocabulary repeats a token; the vocabulary file is corrupt")
        self.pattern = str(pattern)
        self._specials = _special_ids(special_tokens, len(self.tokens))
        self.label = str(label)
        self._encoding: tiktoken.Encoding | None = None
        self._fingerprint: str | None = None

    # ------------------------------------------------------------------------------ tiktoken
    def encoding(self) -> tiktoken.Encoding:
        if self._encoding is None:
            try:
                self._encoding = tiktoken.Encoding(
                    name=f"scratchllm-bpe-{self.label}",
                    pat_str=self.pattern,
                    mergeable_ranks={t: r for r, t in enumerate(self.tokens)},
                    special_tokens=dict(self._specials),
                )
            except ValueError as e:  # the Rust regex engine rejects the pattern
                raise ConfigError(f"BPE split pattern {self.pattern!r} does not compile ({e})") from e
        return self._encoding

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_encoding"] = None  # rebuilt on demand in the receiving process
        return state

    @property
    def n_ranks(self) -> int:
        return len(self.tokens)

    @property
    def base_vocab_size(self) -> int:
        return max([len(self.tokens) - 1, *self._specials.values()]) + 1

    @property
    def base_special_tokens(self) -> dict[str, int]:
        return dict(self._specials)

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = fingerprint(self.tokens, self.pattern, self._specials)
        return self._fingerprint

    # ------------------------------------------------------------------------------ dict (checkpoints)
    def _base_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "pattern": self.pattern,
            "special_tokens": dict(self._specials),
            "tokens": " ".join(base64.b64encode(t).decode("ascii") for t in self.tokens),
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "BPETokenizer":
        """Rebuild the trained vocabulary from ``to_dict()`` (tokens embedded), checking the fingerprint when it is
        given. ``build_tokenizer(d)`` also restores the added special tokens, as for every tokenizer."""
        try:
            tokens = [base64.b64decode(t, validate=True) for t in str(d["tokens"]).split()]
        except (KeyError, binascii.Error, ValueError) as e:
            raise DataError(f"the stored BPE tokenizer has no valid 'tokens' ({e}); the checkpoint or "
                            "tokenizer.json is corrupt") from e
        tok = cls(tokens, pattern=d.get("pattern", GPT4_PATTERN),
                  special_tokens=d.get("special_tokens", (ENDOFTEXT,)), label=d.get("label", "bpe"))
        tok.check_fingerprint(d.get("fingerprint"), "the stored BPE tokenizer")
        return tok

    def check_fingerprint(self, expected: str | None, what: str) -> None:
        if expected is not None and expected != self.fingerprint:
            raise DataError(f"{what} has fingerprint {self.fingerprint[:12]}…, expected {str(expected)[:12]}…: "
                            "its files changed since it was recorded; use the original files or prepare again")

    # ------------------------------------------------------------------------------ folder (tiktoken format)
    def save_dir(self, directory: str | os.PathLike[str], training: Mapping[str, Any] | None = None) -> Path:
        """Write ``vocab.tiktoken`` + ``bpe.json`` into ``directory`` (created if needed); returns it."""
        out = Path(directory).expanduser()
        out.mkdir(parents=True, exist_ok=True)
        (out / RANKS_FILE).write_bytes(format_ranks(self.tokens))
        meta = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "name": self.label,
            "ranks_file": RANKS_FILE,
            "pattern": self.pattern,
            "special_tokens": dict(self._specials),
            "vocab_size": self.vocab_size,
            "n_ranks": self.n_ranks,
            "fingerprint": self.fingerprint,
            "training": dict(training or {}),
        }
        if self._added:  # not covered by the fingerprint, which is the trained vocabulary's
            meta[ADDED_KEY] = dict(self._added)
        (out / META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return out

    @staticmethod
    def read_meta(directory: str | os.PathLike[str]) -> dict[str, Any]:
        """The parsed ``bpe.json`` of a trained-BPE folder."""
        d = Path(directory).expanduser()
        meta_path = d / META_FILE
        if not meta_path.is_file():
            hint = "" if d.is_dir() else " (the folder does not exist)"
            raise DataError(f"{d} is not a trained BPE folder{hint}: no {META_FILE}; train one with "
                            f"'python -m scratchllm.tokenizer train input=... output={d}'")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"{meta_path} is not valid JSON ({e}); train the tokenizer again") from e
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise DataError(f"{meta_path} is not a {FORMAT} file; train the tokenizer again")
        if int(meta.get("version", 0)) > FORMAT_VERSION:
            raise DataError(f"{meta_path} has format version {meta.get('version')}, newer than this scratchllm "
                            f"reads ({FORMAT_VERSION}); upgrade scratchllm")
        return meta

    @classmethod
    def from_dir(cls, directory: str | os.PathLike[str]) -> "BPETokenizer":
        """Load a folder written by ``save_dir`` (checking its fingerprint)."""
        d = Path(directory).expanduser()
        meta = cls.read_meta(d)
        ranks_path = d / str(meta.get("ranks_file", RANKS_FILE))
        if not ranks_path.is_file():
            raise DataError(f"{ranks_path} is missing; train the tokenizer again")
        tokens = parse_ranks(ranks_path.read_bytes(), str(ranks_path))
        tok = cls(tokens, pattern=meta.get("pattern", GPT4_PATTERN),
                  special_tokens=meta.get("special_tokens", (ENDOFTEXT,)), label=meta.get("name", d.name))
        tok.check_fingerprint(meta.get("fingerprint"), f"the BPE tokenizer in {d}")
        tok.add_special_tokens(meta.get(ADDED_KEY) or {})
        return tok

    def __repr__(self) -> str:
        return f"BPETokenizer(label={self.label!r}, vocab_size={self.vocab_size})"
