"""Classification data for ``objective=classify``: texts with labels, padded batches with class ids.

Files (files/folders/globs like every input): JSONL lines ``{"text": "…", "label": "…"}`` or CSV with a header
holding ``text`` and ``label`` columns. The label set is the sorted labels of the training split, unless
``labels=[…]`` fixes it; a label outside it (a typo in the validation file) is a one-line error naming the line.

Built in (``genre_passages``): a passage of consecutive speeches from a play, labelled with its genre
(comedies, histories, problems, roman, romances, tragedies). Held-out = the pretraining corpus's validation plays,
so the model must recognise a genre in a play it has never seen; the majority class is the baseline to beat.

Each text is encoded as ordinary text and cut to ``context_length`` tokens (keeping its start, counted); the
batch is ``input_ids`` (right-padded), ``attention_mask`` and ``labels`` (one class id per row).
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import torch

from scratchllm.errors import DataError
from scratchllm.finetune.formats import read_jsonl
from scratchllm.finetune.plays import speeches
from scratchllm.textio import expand_paths

log = logging.getLogger(__name__)
Example = tuple[str, str, str]  # (text, label, where)


def read_labelled(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], hint: str) -> list[Example]:
    files = expand_paths(paths, accept=lambda p: p.suffix in (".jsonl", ".json", ".csv"), kinds="JSONL/CSV",
                         hint=hint)
    out: list[Example] = []
    for f in files:
        rows = _csv_rows(f) if f.suffix == ".csv" else read_jsonl(f, hint)
        for where, row in rows:
            text, label = row.get("text"), row.get("label")
            if not isinstance(text, str) or not text:
                raise DataError(f"{where}: field 'text' must be a non-empty string")
            if not isinstance(label, (str, int)) or isinstance(label, bool) or str(label) == "":
                raise DataError(f"{where}: field 'label' must be a non-empty string or integer")
            out.append((text, str(label), where))
    if not out:
        raise DataError(f"{', '.join(map(str, files))} hold no labelled examples; check {hint}")
    return out


def _csv_rows(path: Path):
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = {"text", "label"} - set(reader.fieldnames or [])
        if missing:
            raise DataError(f"{path}:1: the CSV header lacks column(s) {sorted(missing)}; it needs text and label")
        for number, row in enumerate(reader, start=2):
            yield f"{path}:{number}", row


def genre_passages(*, per_play: int = 60, val_per_play: int = 30, speeches_per_passage: int = 3,
                   max_chars: int = 200) -> dict[str, list[Example]]:
    """The built-in genre set (module docstring): passages every few speeches, deterministic, split by play."""
    from scratchllm.data.corpora.render import render_play
    from scratchllm.data.corpora.shakespeare import ShakespearePlays

    corpus = ShakespearePlays()
    held_out = set(corpus.val_plays)
    out: dict[str, list[Example]] = {"train": [], "val": []}
    for play in corpus.plays:
        val = play.slug in held_out
        found = speeches(render_play(play.path.read_text(encoding="utf-8")))
        cap = val_per_play if val else per_play
        step = max(1, len(found) // cap)
        for n, i in enumerate(range(0, len(found) - speeches_per_passage, step)):
            if n >= cap:
                break
            text = "\n".join(f"{who}: {' '.join(words.split())}" for who, words in found[i: i + speeches_per_passage])
            out["val" if val else "train"].append((text[:max_chars], play.genre, f"{play.slug}#{i}"))
    return out


def label_ids(train: Sequence[Example], labels: Sequence[str] | None) -> dict[str, int]:
    names = [str(x) for x in labels] if labels else sorted({label for _, label, _ in train})
    if len(names) < 2:
        raise DataError(f"classification needs at least 2 labels, the training data has {names}")
    return {name: i for i, name in enumerate(names)}


def encode_labelled(examples: Sequence[Example], tokenizer: Any, ids: dict[str, int], *, context_length: int,
                    name: str) -> list[tuple[list[int], int]]:
    out, cut = [], 0
    for text, label, where in examples:
        if label not in ids:
            raise DataError(f"{where}: unknown label {label!r}; the labels are {list(ids)} (set data.labels=[...] "
                            "to name them all)")
        tokens = tokenizer.encode_ordinary(text)
        if len(tokens) > context_length:
            tokens, cut = tokens[:context_length], cut + 1
        out.append((tokens, ids[label]))
    if cut:
        log.warning("%s: %d of %d texts longer than %d tokens were cut to their start", name, cut, len(out),
                    context_length)
    return out


def collate_labelled(examples: Sequence[tuple[list[int], int]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(x) for x, _ in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (x, _) in enumerate(examples):
        ids[row, : len(x)] = torch.tensor(x)
        attention[row, : len(x)] = 1
    return {"input_ids": ids, "attention_mask": attention,
            "labels": torch.tensor([y for _, y in examples], dtype=torch.long)}
