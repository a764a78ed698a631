"""What a corpus is to the rest of the pipeline: documents for a train and a val split, plus a fingerprint.

The fingerprint is the cache key of prepared shards: it must change whenever the options or the content
change, and stay the same otherwise, so preparing twice reuses the shards and editing a file rebuilds them.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Protocol, runtime_checkable

from scratchllm.errors import ConfigError

SPLITS = ("train", "val")


@runtime_checkable
class Corpus(Protocol):
    """A source of documents. ``splits()`` -> ``{"train": [doc, ...], "val": [doc, ...]}``."""

    def splits(self) -> dict[str, list[str]]: ...

    def fingerprint(self) -> str: ...


def digest(payload: Any) -> str:
    """Stable short hash of a JSON-able value (keys sorted)."""
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8")
    return hashlib.blake2b(blob, digest_size=16).hexdigest()


def check_fraction(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ConfigError(f"{name}={value} must be between 0 and 1 (exclusive), e.g. 0.1")
    return value
