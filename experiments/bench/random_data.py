"""``RandomTokens``: uniform random ids in the DataModule shape the run driver expects (``--data random``).

Use it to take the data pipeline out of the measurement (a loop-overhead comparison on a model with a real
50k vocabulary without tokenising a corpus for it), or for presets whose vocabulary matches no offline tokenizer.
A fixed pool of batches is drawn once and cycled, so producing a batch costs one tensor index.
"""

from __future__ import annotations

from typing import Any, Iterator

import lightning as L
import torch
from torch.utils.data import DataLoader, IterableDataset


class RandomIdsTokenizer:
    """Just what run.train reads from a tokenizer: size, name, ``to_dict``, ``eot_id`` (no text is decoded)."""

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = int(vocab_size)
        self.name = f"random-{self.vocab_size}"
        self.eot_id = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": "random", "vocab_size": self.vocab_size}


class _Pool(IterableDataset):
    def __init__(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        i = 0
        while True:
            yield self.batches[i % len(self.batches)]
            i += 1


class RandomTokens(L.LightningDataModule):
    """An endless stream of {input_ids, labels} batches of random ids; labels are the ids shifted by one like real windows.

    ``corpus`` is accepted and ignored: the run driver reads ``data.corpus`` for its hyper-parameter log."""

    def __init__(self, vocab_size: int, batch_size: int, context_length: int, seed: int = 0, pool: int = 8,
                 corpus: Any = None) -> None:
        super().__init__()
        self.batch_size = int(batch_size)
        self.context_length = int(context_length)
        self.tokenizer = RandomIdsTokenizer(vocab_size)
        g = torch.Generator().manual_seed(seed)
        self._batches = []
        for _ in range(pool):
            ids = torch.randint(0, vocab_size, (self.batch_size, self.context_length + 1), generator=g)
            self._batches.append({"input_ids": ids[:, :-1].contiguous(), "labels": ids[:, 1:].contiguous()})

    def train_dataloader(self) -> DataLoader:
        return DataLoader(_Pool(self._batches), batch_size=None, pin_memory=torch.cuda.is_available())

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self._batches[:1], batch_size=None)
