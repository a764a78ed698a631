"""Readers of fine-tuning files: every example becomes a conversation (a list of ``{role, content}``).

Inputs are files, folders or globs, found by ``scratchllm.textio.expand_paths`` like every other input (a folder
means its ``*.jsonl`` / ``*.json`` files). One JSON object per line:

- chat: ``{"messages": [{"role": "system"|"user"|"assistant", "content": "…"}, …]}`` (several turns allowed);
- instruction (Alpaca): ``{"instruction": "…", "input": "…" (optional), "output": "…"}``, read as one user turn
  (the instruction, then the input after a blank line) and one assistant turn (the output).

``format=auto`` lets each line decide (``messages`` → chat, ``instruction`` → Alpaca). A bad line is a
``DataError`` naming the file, the line number and the field; blank lines are skipped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

from scratchllm.errors import ConfigError, DataError
from scratchllm.finetune.chat import check_messages
from scratchllm.textio import expand_paths, read_jsonl  # read_jsonl: the one JSONL line reader

FORMATS = ("auto", "chat", "alpaca")
_SUFFIXES = (".jsonl", ".json")


def to_messages(obj: dict[str, Any], where: str, fmt: str = "auto", system: str | None = None) -> list[dict[str, str]]:
    """The conversation one JSON object stands for (``system`` is prepended when the example has none)."""
    if fmt not in FORMATS:
        raise ConfigError(f"format={fmt!r} is not known; choose one of {', '.join(FORMATS)}")
    kind = fmt if fmt != "auto" else ("chat" if "messages" in obj else "alpaca" if "instruction" in obj else None)
    if kind is None:
        raise DataError(f"{where}: neither a 'messages' field (chat) nor an 'instruction' field (Alpaca)")
    if kind == "chat":
        if "messages" not in obj:
            raise DataError(f"{where}: missing field 'messages' (format=chat)")
        messages = check_messages(obj["messages"], where)
    else:
        for key in ("instruction", "output"):
            if not isinstance(obj.get(key), str):
                raise DataError(f"{where}: field '{key}' must be a string (format=alpaca)")
        extra = obj.get("input") or ""
        if not isinstance(extra, str):
            raise DataError(f"{where}: field 'input' must be a string (format=alpaca)")
        user = obj["instruction"] + (f"\n\n{extra}" if extra else "")
        messages = [{"role": "user", "content": user}, {"role": "assistant", "content": obj["output"]}]
    if system and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": system}, *messages]
    return messages


def read_conversations(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    fmt: str = "auto",
    system: str | None = None,
    hint: str = "data.train_paths",
) -> list[list[dict[str, str]]]:
    """Every conversation in the files ``paths`` names, in file then line order."""
    files = expand_paths(paths, accept=lambda p: p.suffix in _SUFFIXES, kinds="JSONL", hint=hint)
    conversations = [to_messages(obj, where, fmt, system) for f in files for where, obj in read_jsonl(f, hint)]
    if not conversations:
        raise DataError(f"{', '.join(map(str, files))} hold no examples; check {hint}")
    return conversations
