"""Preference pairs for ``objective=dpo``: a prompt with a chosen and a rejected answer.

Files (JSONL, files/folders/globs like every input): ``{"prompt": "…", "chosen": "…", "rejected": "…"}``, each
read as two conversations (one user turn, one assistant turn) that differ only in the answer. ``prompt`` may also
be a list of ``{role, content}`` messages (a system prompt, earlier turns) ending with a user turn.

Built in (``preference_pairs``): the "who speaks next?" questions of ``plays.py``, chosen = the true next speaker,
rejected = the speaker of the last speech (a name from the same exchange, plausible, and rarely right since a
speaker seldom answers himself).

Batches hold the chosen rows, then the rejected rows (``pairs`` of each), padded together, the prompt masked.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import torch

from scratchllm.errors import DataError
from scratchllm.finetune.batches import EncodedSet, collate, encode_examples
from scratchllm.finetune.chat import ChatTemplate, check_messages
from scratchllm.finetune.formats import read_jsonl
from scratchllm.finetune.plays import builtin_splits
from scratchllm.textio import expand_paths

Pair = tuple[list[dict[str, str]], list[dict[str, str]]]  # (chosen conversation, rejected conversation)


def to_pair(obj: dict[str, Any], where: str, system: str | None = None) -> Pair:
    for key in ("chosen", "rejected"):
        if not isinstance(obj.get(key), str):
            raise DataError(f"{where}: field '{key}' must be a string (preference data: prompt, chosen, rejected)")
    prompt = obj.get("prompt")
    if isinstance(prompt, str):
        messages = [{"role": "user", "content": prompt}]
    elif isinstance(prompt, list):
        messages = check_messages(prompt, where, need_assistant=False)
    else:
        raise DataError(f"{where}: field 'prompt' must be a string or a list of {{role, content}} messages")
    if system and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": system}, *messages]
    return ([*messages, {"role": "assistant", "content": obj["chosen"]}],
            [*messages, {"role": "assistant", "content": obj["rejected"]}])


def read_pairs(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *, system: str | None = None,
               hint: str = "data.train_paths") -> list[Pair]:
    files = expand_paths(paths, accept=lambda p: p.suffix in (".jsonl", ".json"), kinds="JSONL", hint=hint)
    pairs = [to_pair(obj, where, system) for f in files for where, obj in read_jsonl(f, hint)]
    if not pairs:
        raise DataError(f"{', '.join(map(str, files))} hold no preference pairs; check {hint}")
    return pairs


def preference_pairs(task: str, **options: Any) -> dict[str, list[Pair]]:
    """The built-in pairs (module docstring), train and held-out, from ``plays.builtin_splits``."""
    out: dict[str, list[Pair]] = {}
    for split, conversations in builtin_splits(task, **options).items():
        out[split] = []
        for conv in conversations:
            last_speaker = conv[1]["content"].split("\n")[-1].split(":")[0]
            if last_speaker == conv[-1]["content"]:
                continue  # no plausible wrong answer from this exchange
            out[split].append((conv, [*conv[:-1], {"role": "assistant", "content": last_speaker}]))
    return out


def encode_pairs(pairs: Sequence[Pair], template: ChatTemplate, *, name: str = "train", **options: Any) -> EncodedSet:
    """Each pair as one example ``(chosen_ids, chosen_labels, rejected_ids, rejected_labels)``; a pair is kept
    only when both sides survive the truncation policy (counted as for SFT)."""
    chosen = encode_examples([c for c, _ in pairs], template, name=f"{name} chosen", keep_all=True, **options)
    rejected = encode_examples([r for _, r in pairs], template, name=f"{name} rejected", keep_all=True, **options)
    out = EncodedSet(truncated=max(chosen.truncated, rejected.truncated))
    for c, r in zip(chosen.examples, rejected.examples):
        if c is None or r is None:
            out.dropped += 1
        else:
            out.examples.append((*c, *r))
    if not out.examples:
        raise DataError(f"no {name} preference pair fits in the context; raise data.context_length")
    return out


def collate_pairs(examples: Sequence[tuple[list[int], ...]], pad_id: int) -> dict[str, Any]:
    """Chosen rows then rejected rows, padded together; ``pairs`` = how many of each."""
    batch = collate([(e[0], e[1]) for e in examples] + [(e[2], e[3]) for e in examples], pad_id)
    batch["pairs"] = torch.tensor(len(examples))
    return batch
