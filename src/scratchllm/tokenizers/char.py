"""Character-level tokenizer: one id per Unicode character, the classic char-rnn / nanoGPT Shakespeare setup.

The vocabulary is the sorted set of characters of the *training* text. Text at generation time (or in a
validation split) may contain characters never seen in training; ``unknown`` decides what happens:

- ``"error"``: encoding raises ``InputError`` naming the unseen characters, so a typo in a prompt is loud;
- ``"replace"``: one extra id, right after the characters, stands for ``<unk>`` (a special token of the
  vocabulary); it decodes to U+FFFD (the Unicode replacement character) so decoded text keeps one character
  per id. Added special tokens (``add_special_tokens``) come after it.

Encoding is vectorised with numpy (code points -> ``searchsorted`` in the sorted vocabulary) because
tokenising a multi-megabyte corpus one dict lookup at a time would dominate data preparation.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from scratchllm.errors import ConfigError, DataError, InputError
from scratchllm.tokenizers.base import Tokenizer

UNKNOWN_CHOICES = ("error", "replace")
UNK_TOKEN = "<unk>"
UNK_TEXT = "\ufffd"  # what the <unk> id decodes to


def _codepoints(text: str) -> np.ndarray:
    # UTF-32-LE is exactly one uint32 per code point, so this is a zero-copy view of the string's characters.
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


class CharTokenizer(Tokenizer):
    """One id per character of ``chars`` (in the given order), plus ``<unk>`` when ``unknown="replace"``.
    ``encode_array`` (``encode_ordinary`` as a numpy array) is the fast path for whole corpora."""

    name = "char"

    def __init__(self, chars: Sequence[str], unknown: str = "error") -> None:
        super().__init__()
        chars = list(chars)
        if unknown not in UNKNOWN_CHOICES:
            raise ConfigError(f"tokenizer.unknown={unknown!r} is not one of {list(UNKNOWN_CHOICES)}")
        bad = [c for c in chars if not isinstance(c, str) or len(c) != 1]
        if bad:
            raise ConfigError(f"a char tokenizer vocabulary holds single characters, got {bad[:5]!r}")
        if len(set(chars)) != len(chars):
            raise ConfigError("a char tokenizer vocabulary must not repeat characters")
        if not chars:
            raise ConfigError("a char tokenizer needs at least one character")
        self.chars = chars
        self.unknown = unknown
        cps = np.array([ord(c) for c in chars], dtype=np.uint32)
        order = np.argsort(cps, kind="stable")
        self._sorted_cps = cps[order]  # for searchsorted
        self._sorted_ids = order.astype(np.int64)  # id of each sorted code point
        self._itos = chars + ([UNK_TEXT] if unknown == "replace" else [])

    @classmethod
    def from_text(cls, text: str, unknown: str = "error") -> "CharTokenizer":
        """Vocabulary = the sorted unique characters of ``text``."""
        if not text:
            raise DataError("cannot build a character vocabulary from empty text; check the training split")
        return cls(sorted(set(text)), unknown=unknown)

    @property
    def base_vocab_size(self) -> int:
        return len(self._itos)

    @property
    def base_special_tokens(self) -> dict[str, int]:
        return {} if self.unk_id is None else {UNK_TOKEN: self.unk_id}

    @property
    def unk_id(self) -> int | None:
        """Id of ``<unk>`` (the id after the characters) when ``unknown="replace"``, else None."""
        return len(self.chars) if self.unknown == "replace" else None

    def encode_array(self, text: str) -> np.ndarray:
        """Ids of ``text`` as an int64 numpy array (the fast path used for whole corpora)."""
        cps = _codepoints(text)
        if cps.size == 0:
            return np.zeros(0, dtype=np.int64)
        pos = np.searchsorted(self._sorted_cps, cps)
        pos_clipped = np.minimum(pos, len(self._sorted_cps) - 1)
        known = self._sorted_cps[pos_clipped] == cps
        ids = self._sorted_ids[pos_clipped]
        if not known.all():
            if self.unknown == "replace":
                ids = np.where(known, ids, self.unk_id)
            else:
                unseen = [chr(int(c)) for c in np.unique(cps[~known])]
                shown = ", ".join(repr(c) for c in unseen[:10]) + (", ..." if len(unseen) > 10 else "")
                raise InputError(
                    f"{len(unseen)} character(s) not in the char vocabulary: {shown}; "
                    "set tokenizer.unknown=replace to map them to <unk>"
                )
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        return self.encode_array(text).tolist()

    def _base_decode(self, ids: list[int]) -> str:
        n = len(self._itos)
        return "".join(self._itos[i] if 0 <= i < n else self._bad_id(i) for i in ids)

    def _bad_id(self, i: int) -> str:
        raise InputError(f"token id {i} is outside the char vocabulary (0..{self.vocab_size - 1})")

    def _base_dict(self) -> dict[str, Any]:
        return {"name": self.name, "chars": "".join(self.chars), "unknown": self.unknown}

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size}, unknown={self.unknown!r})"
