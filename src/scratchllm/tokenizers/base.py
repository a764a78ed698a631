"""The one tokenizer interface every stage meets: text -> ids for shards, ids -> text for samples.

A tokenizer must be rebuildable from a small plain dict (``to_dict``) because that dict travels inside every
training checkpoint: a checkpoint alone is enough to turn generated ids back into text, with no extra files.
Rebuilding (``build_tokenizer`` / ``tokenizer_from_dict`` / ``load_tokenizer``) lives in ``factory.py``, which
knows every concrete class; this module knows none of them.

**Special tokens**, one mechanism for all tokenizers. ``special_tokens`` (text -> id) holds

- the vocabulary's own: ``<|endoftext|>`` of the byte-level BPEs (``eot_id``), a trained BPE's extra ones, the
  char tokenizer's ``<unk>``; they decode as the vocabulary decides (``<unk>`` as U+FFFD, one character per id);
- tokens added later with ``add_special_tokens`` (chat markers such as ``<|im_start|>``): each gets the next id
  after the vocabulary, decodes to its own text, and travels in ``to_dict()`` under ``added_special_tokens``.

``encode`` reads the text of a special token as ordinary text unless ``allowed_special`` names it: a document
(or a user's chat message) cannot smuggle in a document boundary or a turn marker. Whoever inserts structure on
purpose (data preparation, chat rendering) asks for it.
"""

from __future__ import annotations

import json
import os
import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Collection, Iterable, Literal, Mapping, Sequence

from scratchllm.errors import ConfigError, DataError, InputError

ENDOFTEXT = "<|endoftext|>"
ADDED_KEY = "added_special_tokens"  # the to_dict() key of the added special tokens (name -> id)
# A Hugging Face export folder holds HF's own tokenizer.json (no "name" field) beside our Tokenizer.save file.
HF_EXPORT_FILE = "scratchllm_tokenizer.json"

AllowedSpecial = Literal["all"] | Collection[str]


class Tokenizer(ABC):
    """Text <-> token ids. Subclasses set ``name`` and implement their vocabulary (the ``base_*`` members,
    ``encode_ordinary``, ``_base_decode``, ``_base_dict``); added special tokens are handled here, once."""

    name: str = "abstract"

    def __init__(self) -> None:
        self._added: dict[str, int] = {}  # special tokens added after the vocabulary was built, in id order

    # ------------------------------------------------------------------------------ the subclass's vocabulary
    @property
    @abstractmethod
    def base_vocab_size(self) -> int:
        """Ids of the vocabulary itself (its own special tokens included), before any added special token."""

    @property
    def base_special_tokens(self) -> dict[str, int]:
        """The vocabulary's own special tokens (text -> id)."""
        return {}

    @abstractmethod
    def encode_ordinary(self, text: str) -> list[int]:
        """Token ids of ``text``, the text of any special token included as ordinary text."""

    def encode_ordinary_batch(self, texts: list[str]) -> list[list[int]]:
        """``encode_ordinary`` of each text (subclasses may parallelise)."""
        return [self.encode_ordinary(t) for t in texts]

    @abstractmethod
    def _base_decode(self, ids: list[int]) -> str:
        """Text of ids of the vocabulary itself (no added special token among them)."""

    def _base_token_bytes(self, token_id: int) -> bytes:
        return self._base_decode([token_id]).encode("utf-8")

    @abstractmethod
    def _base_dict(self) -> dict[str, Any]:
        """A JSON-able dict with ``"name"`` and everything needed to rebuild the vocabulary itself."""

    # ------------------------------------------------------------------------------ the whole tokenizer
    @property
    def vocab_size(self) -> int:
        """Number of distinct ids the tokenizer can emit (ids are ``0 .. vocab_size-1``)."""
        return self.base_vocab_size + len(self._added)

    @property
    def special_tokens(self) -> dict[str, int]:
        """Every special token (text -> id): the vocabulary's own, then the added ones."""
        return {**self.base_special_tokens, **self._added}

    @property
    def eot_id(self) -> int | None:
        """Id of ``<|endoftext|>``, which separates documents, or None if the tokenizer has none."""
        return self.special_tokens.get(ENDOFTEXT)

    def add_special_tokens(self, names: Iterable[str] | Mapping[str, int] | str) -> dict[str, int]:
        """Add special tokens (e.g. ``["<|im_start|>", "<|im_end|>"]``) after the vocabulary, in order; returns
        name -> id for each. A name that is already a special token keeps its id (adding it again is a no-op).

        A mapping (name -> id, as ``to_dict()`` stores them) rebuilds a saved tokenizer: its ids must come out
        exactly so, else the stored tokenizer does not belong to this vocabulary."""
        if isinstance(names, str):  # one name, not its characters
            names = [names]
        expected = {str(k): int(v) for k, v in names.items()} if isinstance(names, Mapping) else None
        order = sorted(expected, key=expected.__getitem__) if expected is not None else list(names)
        known = self.special_tokens
        new: dict[str, int] = {}
        for name in order:
            if not isinstance(name, str) or not name:
                raise ConfigError(f"a special token is a non-empty string, got {name!r}")
            if name not in known:
                known[name] = new[name] = self.vocab_size + len(new)
        got = {name: known[name] for name in order}
        if expected is not None and got != expected:
            raise DataError(f"the stored added special tokens {expected} do not follow this {self.name} vocabulary "
                            f"of {self.base_vocab_size} ids (they would be {got}); the tokenizer file is corrupt")
        self._added.update(new)  # only now: a refused call leaves the tokenizer as it was
        return got

    def encode(self, text: str, allowed_special: AllowedSpecial = ()) -> list[int]:
        """Token ids of ``text``. The text of a special token becomes its id only when ``allowed_special``
        names it (or is ``"all"``); otherwise it is ordinary text."""
        specials = self._allowed(allowed_special)
        if not specials:
            return self.encode_ordinary(text)
        ids: list[int] = []
        for piece in _special_splitter(tuple(specials)).split(text):  # text, special, text, ...
            if piece in specials:
                ids.append(specials[piece])
            elif piece:
                ids.extend(self.encode_ordinary(piece))
        return ids

    def encode_batch(self, texts: list[str], allowed_special: AllowedSpecial = ()) -> list[list[int]]:
        """Token ids of each text (``encode`` of each)."""
        if self._allowed(allowed_special):
            return [self.encode(t, allowed_special) for t in texts]
        return self.encode_ordinary_batch(list(texts))

    def decode(self, ids: Sequence[int]) -> str:
        """Text of the ids; an added special token reads as its own text."""
        ids = as_ids(ids)
        if not self._added:
            return self._base_decode(ids)
        text = {i: s for s, i in self._added.items()}
        parts: list[str] = []
        run: list[int] = []  # ids of the vocabulary itself, decoded together (a character may span tokens)
        for i in ids:
            if i not in text:
                run.append(i)
                continue
            if run:
                parts.append(self._base_decode(run))
                run = []
            parts.append(text[i])
        if run:
            parts.append(self._base_decode(run))
        return "".join(parts)

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes one id stands for. A byte-level BPE token may hold part of a UTF-8 character, so this is
        the honest view of a single token (``decode([id])`` would have to invent a replacement character)."""
        (i,) = as_ids([token_id])
        for name, added in self._added.items():
            if added == i:
                return name.encode("utf-8")
        return self._base_token_bytes(i)

    def to_dict(self) -> dict[str, Any]:
        """A small JSON-able dict with ``"name"`` and everything needed to rebuild this tokenizer."""
        d = self._base_dict()
        if self._added:  # only then: dicts of tokenizers without added tokens stay as they always were
            d[ADDED_KEY] = dict(self._added)
        return d

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``to_dict()`` as JSON to ``path``."""
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")

    def _allowed(self, allowed_special: AllowedSpecial) -> dict[str, int]:
        if not allowed_special:  # the common case (data preparation): nothing to look up
            return {}
        specials = self.special_tokens
        if allowed_special == "all":
            return specials
        if isinstance(allowed_special, str):  # one name, not its characters
            allowed_special = [allowed_special]
        unknown = [s for s in allowed_special if s not in specials]
        if unknown:
            raise InputError(f"{unknown} are not special tokens of this {self.name} tokenizer (it has "
                             f"{list(specials)}); add them first with add_special_tokens")
        return {s: specials[s] for s in allowed_special}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


def as_ids(ids: Sequence[int]) -> list[int]:
    """``ids`` as a list of Python ints (numpy and torch integers included), or an ``InputError``."""
    try:
        return [int(i) for i in ids]
    except (TypeError, ValueError) as e:
        raise InputError(f"token ids must be integers ({e})") from e


def _special_splitter(names: tuple[str, ...]) -> re.Pattern[str]:
    # The capturing group keeps the matches in re.split's output. Longest first, so "<|im_start|>" wins over a
    # shorter special token that is its prefix.
    return re.compile("(" + "|".join(re.escape(s) for s in sorted(names, key=len, reverse=True)) + ")")
