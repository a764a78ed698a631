"""Data: corpora (documents) -> tokenizer -> token shards on disk -> windows -> Lightning DataModule.

    from scratchllm.data import ShardDataModule, ShakespearePlays
    dm = ShardDataModule(ShakespearePlays(), tokenizer="char", context_length=256)
    dm.prepare_data(); dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))  # {"input_ids", "labels"}

``ShardDataModule`` and the window datasets are imported lazily so that using shards or corpora (e.g. in
``python -m scratchllm.prepare``) imports neither Lightning nor torch.
"""

from __future__ import annotations

from typing import Any

from scratchllm.data.corpora import Corpus, ShakespearePlays, TextFiles, TinyShakespeare
from scratchllm.data.prepare import PreparedData, prepare_corpus
from scratchllm.data.shard_folder import ShardFolder
from scratchllm.data.shards import ShardInfo, open_shard, read_shard_info, write_shard

__all__ = [
    "ShardFolder",
    "Corpus",
    "PreparedData",
    "ShakespearePlays",
    "ShardDataModule",
    "ShardInfo",
    "TextFiles",
    "TinyShakespeare",
    "TrainWindowStream",
    "ValWindows",
    "open_shard",
    "prepare_corpus",
    "read_shard_info",
    "slot_window_starts",
    "window_count",
    "write_shard",
]


_WINDOWS = {"TrainWindowStream", "ValWindows", "slot_window_starts", "window_count"}


def __getattr__(name: str) -> Any:
    if name == "ShardDataModule":
        from scratchllm.data.datamodule import ShardDataModule

        return ShardDataModule
    if name in _WINDOWS:
        from scratchllm.data import windows

        return getattr(windows, name)
    raise AttributeError(f"module 'scratchllm.data' has no attribute {name!r}")
