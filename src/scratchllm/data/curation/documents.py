"""What flows through the curation stages: ``Document`` (kept so far) and ``Removal`` (why one was dropped).

Every input record ends as exactly one of the two: a document that reaches the shards, or a ``Removal`` line in
``removed.jsonl`` naming the stage and the reason. That invariant is what lets a user audit a run, and the
report checks it (documents in = documents out + removed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Document:
    """One document: its id (the record's ``id`` field, else ``path:line`` / ``path:row`` / ``path``) and text."""

    id: str
    text: str
    bad_bytes: int = 0  # undecodable byte sequences replaced by U+FFFD while reading
    nbytes: int = -1  # UTF-8 bytes of ``text`` (kept up to date by the pipeline; -1: not counted yet)


@dataclass(slots=True)
class Removal:
    """A record that did not make it, and why. ``text`` (possibly empty) feeds the report's examples only."""

    id: str
    stage: str
    reason: str
    detail: str = ""
    duplicate_of: str | None = None
    nbytes: int = 0
    text: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "stage": self.stage, "reason": self.reason}
        if self.detail:
            out["detail"] = self.detail
        if self.duplicate_of is not None:
            out["duplicate_of"] = self.duplicate_of
        out["bytes"] = self.nbytes
        return out


def utf8_len(text: str) -> int:
    """Bytes of ``text`` in UTF-8 (what the report counts)."""
    return len(text.encode("utf-8", "surrogatepass"))
