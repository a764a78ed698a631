"""``ShardDataModule``: corpus + tokenizer spec -> cached shards -> train stream and val windows for Lightning.

Lifecycle (what Lightning calls, and why it is split this way):

- ``prepare_data()`` runs on one process per node: it tokenises the corpus into the shard cache (or finds
  it already there). Nothing is stored on ``self`` here, as other processes would never see it.
- ``setup(stage)`` runs on every process: it finds the same cache (cheap: the cache key is a hash), checks
  every shard's checksum and that the shards match the tokenizer, and exposes ``self.tokenizer``. The train
  entry point reads ``dm.tokenizer.vocab_size`` right after ``prepare_data(); setup("fit")`` to size the model.
- ``train_dataloader()`` builds the infinite ``TrainWindowStream`` for this rank (rank and world size come
  from the attached trainer) starting after the ``batches_served`` batches already consumed.

Data position in checkpoints: ``state_dict()`` is ``{"batches_served": n}``; Lightning stores it in every
checkpoint and hands it back through ``load_state_dict()`` before the train dataloader is iterated, so a
resumed run continues with the next unseen batch. The count is taken in ``on_before_batch_transfer``: in
Lightning 2.6 the training loop calls that hook on the main process right after it takes a batch for the
step (``training_epoch_loop.advance``), i.e. at consumption, not when the loader prefetches. Only batches
seen while ``trainer.training`` is true count (validation batches pass through the same hook). If a
LightningModule also overrides ``on_before_batch_transfer``, Lightning uses the datamodule's hook.

Default ``stride = context_length // 2``: each token is seen at two different positions of a window per
epoch, twice as many distinct windows as non-overlapping ones, which helps small corpora like Shakespeare.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import lightning as L
import torch
from torch.utils.data import DataLoader

from scratchllm.data.corpora.base import Corpus
from scratchllm.data.position import DataPosition
from scratchllm.data.prepare import PreparedData, prepare_corpus
from scratchllm.data.shards import ShardError, open_shard
from scratchllm.data.windows import TrainWindowStream, ValWindows, window_count
from scratchllm.errors import ConfigError, DataError
from scratchllm.tokenizers import Tokenizer


class ShardDataModule(DataPosition, L.LightningDataModule):
    """Token shards of ``corpus`` as an infinite, resumable train stream and a fixed validation set."""

    def __init__(
        self,
        corpus: Corpus,
        tokenizer: Mapping[str, Any] | str = "char",
        batch_size: int = 32,
        context_length: int = 256,
        stride: int | None = None,
        num_workers: int = 0,
        seed: int = 1337,
        cache_dir: str = "data_cache",
        max_val_windows: int | None = 512,
        val_batch_size: int | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1 or context_length < 1:
            raise ConfigError(f"data.batch_size ({batch_size}) and context_length ({context_length}) must be >= 1")
        if num_workers < 0:
            raise ConfigError(f"data.num_workers={num_workers} must be >= 0")
        self.corpus = corpus
        self.tokenizer_spec = tokenizer
        self.batch_size = int(batch_size)
        self.context_length = int(context_length)
        self.stride = int(stride) if stride is not None else max(1, self.context_length // 2)
        if self.stride < 1:
            raise ConfigError(f"data.stride={stride} must be >= 1")
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.cache_dir = str(cache_dir)
        self.max_val_windows = max_val_windows
        self.val_batch_size = int(val_batch_size) if val_batch_size else self.batch_size
        self.batches_served = 0
        self._prepared: PreparedData | None = None
        self._train_stream: TrainWindowStream | None = None
        self._val_set: ValWindows | None = None

    # ------------------------------------------------------------------ preparation

    def prepare_data(self) -> None:
        prepare_corpus(self.corpus, self.tokenizer_spec, self.cache_dir)

    def setup(self, stage: str | None = None) -> None:
        if self._prepared is not None:
            return  # already set up (Lightning calls setup for fit and again for validate/test)
        prepared = prepare_corpus(self.corpus, self.tokenizer_spec, self.cache_dir)
        tok = prepared.tokenizer
        for path in prepared.train + prepared.val:
            try:
                info, _ = open_shard(path, verify=True)
            except ShardError as e:  # the fix depends on the folder: a cache is rebuilt, a prepared folder is not
                raise DataError(e.rebuild(prepared.rebuild_hint)) from e
            if info.tokenizer != tok.name or info.vocab_size != tok.vocab_size:
                raise DataError(f"shard {path} was written by tokenizer {info.tokenizer!r} (vocab {info.vocab_size})"
                                f" but the folder's tokenizer is {tok.name!r} (vocab {tok.vocab_size}); "
                                f"{prepared.rebuild_hint}")
        span = self.context_length + 1
        for split, n in (("train", prepared.train_tokens), ("val", prepared.val_tokens)):
            if n < span:
                raise DataError(f"the {split} split has {n} tokens, fewer than context_length+1 = {span}; "
                                "lower model.context_length or add data")
        self._prepared = prepared
        self._val_set = ValWindows(prepared.val, self.context_length, self.max_val_windows)

    def _require(self) -> PreparedData:
        if self._prepared is None:
            raise RuntimeError("ShardDataModule is not set up yet; call prepare_data() and setup('fit') first")
        return self._prepared

    # ------------------------------------------------------------------ facts about the data

    @property
    def tokenizer(self) -> Tokenizer:
        return self._require().tokenizer

    @property
    def prepared(self) -> PreparedData:
        return self._require()

    @property
    def train_tokens(self) -> int:
        return self._require().train_tokens

    @property
    def val_tokens(self) -> int:
        return self._require().val_tokens

    @property
    def windows_per_epoch(self) -> int:
        """Train windows in one epoch (over all ranks and workers)."""
        return window_count(self.train_tokens, self.context_length, self.stride)

    @property
    def val_windows(self) -> int:
        return len(self._val_set) if self._val_set is not None else 0

    # ------------------------------------------------------------------ loaders

    def _rank_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return int(trainer.global_rank), int(trainer.world_size)

    def _pin(self) -> bool:
        return torch.cuda.is_available()

    def train_dataloader(self) -> DataLoader:
        prepared = self._require()
        rank, world = self._rank_world()
        self._train_stream = TrainWindowStream(
            prepared.train,
            context_length=self.context_length,
            batch_size=self.batch_size,
            stride=self.stride,
            seed=self.seed,
            rank=rank,
            world_size=world,
            batches_served=self.batches_served,
        )
        return DataLoader(
            self._train_stream,
            batch_size=None,
            num_workers=self.num_workers,
            pin_memory=self._pin(),
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader:
        self._require()
        assert self._val_set is not None
        return DataLoader(
            self._val_set,
            batch_size=self.val_batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            pin_memory=self._pin(),
            persistent_workers=self.num_workers > 0,
        )

    # ------------------------------------------------------------------ data position
    def _move_stream(self, batches_served: int) -> None:
        if self._train_stream is not None:  # a re-iterated single-process stream continues from here
            self._train_stream.batches_served = batches_served

    @property
    def cache_path(self) -> Path:
        return self._require().directory
