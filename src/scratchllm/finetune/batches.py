"""From rendered conversations to padded batches: labels with the prompt masked, truncation, length grouping.

- **Labels**: ``input_ids = ids[:-1]``, ``labels = ids[1:]`` with every position whose target is not an
  assistant token set to -100 (``mask_prompt=True``, the default); ``mask_prompt=False`` trains on every token
  (the comparison the issue asks for). The objective then averages over exactly the unmasked targets.
- **Truncation policy** (over-long examples: more than ``context_length`` + 1 tokens): ``right`` keeps the first
  ``context_length`` + 1 tokens (the start of the conversation, where the question is) and cuts the end;
  ``drop`` leaves the example out. An example with no trained token left is always dropped. Both are counted
  (``EncodedSet.truncated`` / ``dropped``) and logged.
- **Padding**: right padding with ``pad_id`` (never a target: labels -100, ``attention_mask`` 0). The GPT is
  causal, so padding after the last real token cannot change any real position's logits.
- **Length-grouped batches** (``LengthGroupedBatches``): each epoch, shuffle, cut into groups of
  ``group_batches`` batches, sort each group by length and shuffle the batches: similar lengths share a batch,
  so little compute goes to padding, while batch order stays random.
"""

from __future__ import annotations

import itertools
import logging
import random
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import torch

from scratchllm.errors import ConfigError, NoExampleFits
from scratchllm.finetune.chat import ChatTemplate
from scratchllm.model.gpt import IGNORE_INDEX

log = logging.getLogger(__name__)


TRUNCATION = ("right", "drop")


@dataclass
class EncodedSet:
    examples: list = field(default_factory=list)  # (input_ids, labels), or (ids, labels, ids, labels) for pairs
    truncated: int = 0
    dropped: int = 0

    def lengths(self) -> list[int]:
        return [max(len(ids) for ids in e[::2]) for e in self.examples]


def encode_examples(
    conversations: Sequence[list[dict[str, str]]],
    template: ChatTemplate,
    *,
    context_length: int,
    mask_prompt: bool = True,
    truncation: str = "right",
    name: str = "train",
    keep_all: bool = False,
) -> EncodedSet:
    """Render, shift and truncate every conversation (module docstring: the policy). ``keep_all``: a dropped
    example leaves a None in its place (so that two lists stay aligned, e.g. the sides of preference pairs)."""
    if truncation not in TRUNCATION:
        raise ConfigError(f"data.truncation={truncation!r} is not known; choose one of {', '.join(TRUNCATION)}")
    out = EncodedSet()
    for conv in conversations:
        rendered = template.render(conv)
        ids, mask = rendered.ids, rendered.mask
        if len(ids) > context_length + 1:
            if truncation == "drop":
                out.dropped += 1
                if keep_all:
                    out.examples.append(None)
                continue
            ids, mask = ids[: context_length + 1], mask[: context_length + 1]
            out.truncated += 1
        labels = [t if (m or not mask_prompt) else IGNORE_INDEX for t, m in zip(ids[1:], mask[1:])]
        if not any(m for m in mask[1:]):
            out.dropped += 1  # no assistant token left to learn from
            if keep_all:
                out.examples.append(None)
            continue
        out.examples.append((ids[:-1], labels))
    if out.truncated or out.dropped:
        log.warning("%s: %d of %d examples longer than %d tokens were truncated (truncation=%s), %d dropped",
                    name, out.truncated, len(conversations), context_length + 1, truncation, out.dropped)
    if not any(e is not None for e in out.examples):
        raise NoExampleFits(name, context_length)
    return out


def collate(examples: Sequence[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a list of (input_ids, labels) into ``input_ids``, ``labels`` and ``attention_mask`` tensors."""
    width = max(len(x) for x, _ in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (x, y) in enumerate(examples):
        ids[row, : len(x)] = torch.tensor(x)
        labels[row, : len(y)] = torch.tensor(y)
        attention[row, : len(x)] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": attention}


class LengthGroupedBatches(torch.utils.data.Sampler[list[int]]):
    """Batches of indices, length-grouped (module docstring); ``shuffle=False`` gives sorted, fixed batches.

    Each rank takes every ``world``-th batch of the same epoch order (the seed is shared), and every rank gets
    the same number of batches (the tail that does not divide is left out), so DDP ranks never wait on a
    missing batch.

    Data position: ``start`` counts the batches of this rank already served, over all epochs. A pass begins
    there (epoch ``start // len(self)``, that epoch's order from batch ``start % len(self)``) and moves it on
    as it yields, so passes follow each other through the epochs, and a resumed run that sets ``start`` to
    the count in its checkpoint gets the very batches an uninterrupted run would have had next."""

    def __init__(self, lengths: Sequence[int], batch_size: int, *, shuffle: bool = True, seed: int = 0,
                 group_batches: int = 32, rank: int = 0, world: int = 1, start: int = 0) -> None:
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {batch_size}")
        self.lengths, self.batch_size, self.shuffle = list(lengths), batch_size, shuffle
        self.seed, self.group_batches, self.rank, self.world = seed, group_batches, rank, world
        self.start = int(start)
        self._per_epoch: int | None = None

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This rank's batches in ``epoch``, in order (the same for every call: a function of seed and epoch)."""
        order = list(range(len(self.lengths)))
        rng = random.Random(self.seed * 1_000_003 + epoch)
        if self.shuffle:
            rng.shuffle(order)
            group = self.batch_size * self.group_batches
            order = [i for s in range(0, len(order), group)
                     for i in sorted(order[s: s + group], key=self.lengths.__getitem__)]
        else:
            order.sort(key=self.lengths.__getitem__)
        batches = [order[s: s + self.batch_size] for s in range(0, len(order), self.batch_size)]
        if self.shuffle:
            rng.shuffle(batches)
        usable = len(batches) - len(batches) % self.world if len(batches) >= self.world else len(batches)
        return batches[:usable][self.rank:: self.world]

    def __iter__(self) -> Iterator[list[int]]:
        per = len(self)
        if per == 0:
            return
        epoch, offset = divmod(self.start, per)
        for i, batch in enumerate(self.epoch_batches(epoch)[offset:], start=offset + 1):
            self.start = epoch * per + i
            yield batch

    def __len__(self) -> int:
        if self._per_epoch is None:  # the same for every epoch: only the order changes
            self._per_epoch = len(self.epoch_batches(0))
        return self._per_epoch


class BatchStream(torch.utils.data.IterableDataset):
    """The collated batches of a ``LengthGroupedBatches``, as an iterable dataset (``DataLoader(batch_size=None)``).

    Why not ``DataLoader(batch_sampler=…)``: under DDP Lightning then tries to put its ``DistributedSampler``
    into the batch sampler, which it cannot rebuild (ours already splits by rank); an iterable dataset it leaves
    alone, and the data position (``sampler.start``) stays ours to save and restore. ``resumable=False`` (the
    validation set): every pass is epoch 0 from its first batch. With ``num_workers`` > 0, worker w collates
    batches w, w + W, …; the DataLoader reads the workers in turn, so the order is the same as with none (a
    worker's copy cannot move the main process's ``start``: the data module sets it from the batches consumed)."""

    def __init__(self, examples: Sequence, sampler: LengthGroupedBatches, collate_fn: Callable[[list], dict],
                 resumable: bool = True) -> None:
        self.examples, self.sampler, self.collate_fn, self.resumable = examples, sampler, collate_fn, resumable

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[dict]:
        batches = iter(self.sampler) if self.resumable else iter(self.sampler.epoch_batches(0))
        info = torch.utils.data.get_worker_info()
        if info is not None:
            batches = itertools.islice(batches, info.id, None, info.num_workers)
        for indices in batches:
            yield self.collate_fn([self.examples[i] for i in indices])
