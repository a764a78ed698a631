"""The one tokenizer interface every stage meets: text -> ids for shards, ids -> text for samples.

A tokenizer must be rebuildable from a small plain dict (``to_dict``) because that dict travels inside every
training checkpoint: a checkpoint alone is enough to turn generated ids back into text, with no extra files.
``tokenizer_from_dict`` dispatches on ``d["name"]`` to the concrete class registered in ``factory.py``.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Sequence

from scratchllm.errors import DataError


class Tokenizer(ABC):
    """Text <-> token ids. Subclasses set ``name`` and implement the abstract methods."""

    name: str = "abstract"

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of distinct ids the tokenizer can emit (ids are ``0 .. vocab_size-1``)."""

    @property
    def eot_id(self) -> int | None:
        """Id of the end-of-text token that separates documents, or None if the tokenizer has none."""
        return None

    @property
    def special_tokens(self) -> dict[str, int]:
        """Reserved tokens (text -> id), such as ``<|endoftext|>``. ``encode`` never emits them: data
        preparation inserts them itself, so a document cannot smuggle in a document boundary."""
        return {}

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``."""

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text (subclasses may parallelise)."""
        return [self.encode(t) for t in texts]

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """Text of the ids."""

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes one id stands for. A byte-level BPE token may hold part of a UTF-8 character, so this is
        the honest view of a single token (``decode([id])`` would have to invent a replacement character)."""
        return self.decode([token_id]).encode("utf-8")

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """A small JSON-able dict with ``"name"`` and everything needed to rebuild this tokenizer."""

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``to_dict()`` as JSON to ``path``."""
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


def tokenizer_from_dict(d: dict[str, Any]) -> Tokenizer:
    """Rebuild a tokenizer from the dict its ``to_dict()`` returned (e.g. one stored in a checkpoint)."""
    from scratchllm.tokenizers.factory import build_tokenizer  # late import: factory imports this module

    return build_tokenizer(d)


# A Hugging Face export folder holds HF's own tokenizer.json (no "name" field) beside our Tokenizer.save file.
HF_EXPORT_FILE = "scratchllm_tokenizer.json"


def saved_tokenizer_file(folder: Path) -> Path | None:
    """The ``Tokenizer.save`` file inside ``folder``: a Hugging Face export's ``scratchllm_tokenizer.json``
    first (its ``tokenizer.json`` is Hugging Face's format), else ``tokenizer.json`` (a data cache)."""
    for name in (HF_EXPORT_FILE, "tokenizer.json"):
        if (folder / name).is_file():
            return folder / name
    return None


def load_tokenizer(path: str | os.PathLike[str]) -> Tokenizer:
    """Load a tokenizer saved with ``Tokenizer.save`` (a JSON file), or a folder: a trained BPE (``bpe.json`` +
    ``vocab.tiktoken``, written by ``python -m scratchllm.tokenizer train``) or one holding a ``tokenizer.json``
    (e.g. a prepared data cache)."""
    p = Path(path).expanduser()
    if p.is_dir():
        from scratchllm.tokenizers.bpe import BPETokenizer, is_bpe_dir  # late import: bpe imports this module

        if is_bpe_dir(p):
            return BPETokenizer.from_dir(p)
        found = saved_tokenizer_file(p)
        if found is None:
            raise DataError(f"folder {p} holds no tokenizer (no bpe.json, no tokenizer.json); train one with "
                            "'python -m scratchllm.tokenizer train input=... output=...'")
        p = found
    if not p.is_file():
        raise DataError(f"tokenizer file {p} does not exist; rebuild the data cache or point to a saved tokenizer.json")
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"tokenizer file {p} is not valid JSON ({e}); delete it to rebuild it") from e
    if not isinstance(d, dict) or "name" not in d:
        raise DataError(f"tokenizer file {p} has no 'name' field; delete it to rebuild it")
    return tokenizer_from_dict(d)
