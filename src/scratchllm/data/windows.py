"""Token shards -> training windows: the infinite, sharded, resumable train stream and fixed val windows.

A *window* is ``context_length + 1`` consecutive tokens of the concatenated shards: inputs are its first
``context_length`` tokens, targets the same shifted by one. Train windows start every ``stride`` tokens, so
an *epoch* is ``window_count(...)`` windows, visited in a fresh seeded order each epoch.

Who serves which window. ``n_slots = world_size * num_workers`` data-loading processes (every DataLoader
worker on every rank) share the work: window ``i`` of epoch ``e``'s permutation goes to slot
``i % n_slots`` where ``slot = rank * num_workers + worker_id``. Across all slots each window is served
exactly once per epoch and none is dropped. A slot's windows, epoch after epoch, form one continuous
sequence that is cut into batches, so batches may straddle an epoch boundary.

Why infinite: an ``IterableDataset`` has no sampler to even out ranks, and a rank that runs out of batches
first would hang the others in DDP's all-reduce. So the stream never ends and training stops on
``max_steps`` (see PITFALLS.md).

Resuming without replaying data: ``batches_served`` (k) counts the training batches this rank already
consumed. The DataLoader takes batches from its W workers round-robin (batch ``i`` comes from worker
``i % W``), so slot ``w`` produced ``len(range(w, k, W))`` of them and skips exactly that many of its own
batches, by arithmetic (no skipped data is read). A new DataLoader iterator starts at worker 0 while the next
batch belongs to slot ``k % W``, so worker ``w`` of the resumed run plays slot ``(w + k) % W``: the batch
sequence continues exactly as if training had never stopped (same seed, world size and ``num_workers``;
changing those reshuffles the remaining order). One case is only approximate: a *persistent* worker whose
DataLoader is iterated a second time (Lightning epochs with ``limit_train_batches``) cannot see the new
``batches_served``; it continues after the last batch it produced, so nothing repeats, but up to
``prefetch_factor`` batches per worker that were prefetched and never consumed are skipped.
"""

from __future__ import annotations

import os
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from scratchllm.data.shards import open_shard, read_shard_info
from scratchllm.errors import ConfigError, DataError

Source = str | os.PathLike[str] | np.ndarray


# ----------------------------------------------------------------------------------------- pure functions


def window_count(n_tokens: int, context_length: int, stride: int) -> int:
    """How many windows of ``context_length + 1`` tokens start every ``stride`` tokens in ``n_tokens``."""
    span = context_length + 1
    return 0 if n_tokens < span else (n_tokens - span) // stride + 1


def epoch_permutation(n_windows: int, seed: int, epoch: int) -> np.ndarray:
    """Window order of one epoch: a permutation that depends only on ``(seed, epoch)``."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n_windows)


def slot_window_starts(
    n_tokens: int,
    *,
    context_length: int,
    stride: int,
    seed: int,
    epoch: int,
    rank: int = 0,
    world_size: int = 1,
    worker_id: int = 0,
    num_workers: int = 0,
) -> np.ndarray:
    """Token offsets of the windows that (rank, worker) serves in ``epoch``, in serving order.

    ``num_workers=0`` means the main process loads (one slot per rank), as in ``DataLoader``. ``worker_id`` is
    the slot within the rank: the worker with that id in a run started from scratch (a run resumed after k
    batches shifts it, see the module docstring).
    """
    workers = max(1, num_workers)
    slot, n_slots = rank * workers + worker_id, world_size * workers
    perm = epoch_permutation(window_count(n_tokens, context_length, stride), seed, epoch)
    return perm[slot::n_slots] * stride


# ----------------------------------------------------------------------------------------- token access


class _Tokens:
    """Concatenation of shards (paths, memory-mapped lazily per process) or in-memory arrays."""

    def __init__(self, sources: Sequence[Source]) -> None:
        self.sources = list(sources)
        if not self.sources:
            raise DataError("no token shards given; prepare the data first")
        lengths = [len(s) if isinstance(s, np.ndarray) else read_shard_info(s).n_tokens for s in self.sources]
        self.ends = np.cumsum(lengths, dtype=np.int64)
        self.begins = self.ends - np.asarray(lengths, dtype=np.int64)
        self.n_tokens = int(self.ends[-1]) if len(self.ends) else 0
        self._arrays: list[np.ndarray] | None = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_arrays"] = None  # never pickle memory maps (a pickled memmap is a full copy of the data)
        return state

    def arrays(self) -> list[np.ndarray]:
        if self._arrays is None:  # checksums were verified by whoever built this object's sources
            self._arrays = [s if isinstance(s, np.ndarray) else open_shard(s, verify=False)[1] for s in self.sources]
        return self._arrays

    def windows(self, starts: np.ndarray, length: int) -> np.ndarray:
        """``(len(starts), length)`` int64 array of the token runs beginning at ``starts``."""
        arrays = self.arrays()
        out = np.empty((len(starts), length), dtype=np.int64)
        for row, start in enumerate(starts.tolist()):
            k = int(np.searchsorted(self.ends, start, side="right"))
            filled = 0
            while filled < length:  # a window may run across a shard boundary
                local = start + filled - int(self.begins[k])
                piece = arrays[k][local : local + length - filled]
                out[row, filled : filled + len(piece)] = piece
                filled += len(piece)
                k += 1
        return out


def _split(windows: np.ndarray) -> dict[str, torch.Tensor]:
    """A batch as objectives read it: ``input_ids`` and ``labels`` (the same window shifted by one token)."""
    t = torch.from_numpy(windows)
    return {"input_ids": t[..., :-1].contiguous(), "labels": t[..., 1:].contiguous()}


# ----------------------------------------------------------------------------------------- train stream


class TrainWindowStream(IterableDataset):
    """Infinite stream of ``{input_ids, labels}`` batches, each ``(batch_size, context_length)`` int64.

    Use with ``DataLoader(stream, batch_size=None)``: the stream batches itself, so every worker's batches
    are whole runs of its own windows (what makes the resume arithmetic exact).
    """

    def __init__(
        self,
        sources: Sequence[Source],
        context_length: int,
        batch_size: int,
        stride: int | None = None,
        seed: int = 1337,
        rank: int = 0,
        world_size: int = 1,
        batches_served: int = 0,
    ) -> None:
        super().__init__()
        if context_length < 1 or batch_size < 1:
            raise ConfigError(f"context_length ({context_length}) and batch_size ({batch_size}) must be >= 1")
        self.stride = int(stride) if stride is not None else max(1, context_length // 2)
        if self.stride < 1:
            raise ConfigError(f"data.stride={stride} must be >= 1")
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} is outside world_size {world_size}")
        self.tokens = _Tokens(sources)
        self.context_length = int(context_length)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.batches_served = int(batches_served)
        self.n_windows = window_count(self.tokens.n_tokens, self.context_length, self.stride)
        if self.n_windows == 0:
            raise DataError(f"the train split has {self.tokens.n_tokens} tokens, fewer than context_length+1 = "
                            f"{self.context_length + 1}; lower model.context_length or add data")
        self._worker_position: int | None = None  # set inside a DataLoader worker while it iterates

    def slot_windows(self, slot: int, n_slots: int, epoch: int) -> np.ndarray:
        """Window indices (not offsets) slot ``slot`` of ``n_slots`` serves in ``epoch``."""
        return epoch_permutation(self.n_windows, self.seed, epoch)[slot::n_slots]

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker_id, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        # A fresh DataLoader iterator always asks worker 0 first. After k consumed batches the next batch
        # belongs to slot k % W, so worker w takes over the role (slot) of worker (w + k) % W of the run
        # that was interrupted: batch order continues exactly, not just the set of batches.
        role = (worker_id + self.batches_served) % workers
        slot, n_slots = self.rank * workers + role, self.world_size * workers
        per_epoch = len(range(slot, self.n_windows, n_slots))
        if per_epoch == 0:
            raise DataError(f"only {self.n_windows} train windows for {n_slots} loader processes "
                            "(world_size x num_workers); lower data.num_workers or model.context_length")
        if info is not None and self._worker_position is not None:
            # A persistent worker asked to iterate again (a new DataLoader epoch): its copy of
            # batches_served is stale, so continue after the last window it produced instead of replaying.
            position = self._worker_position
        else:
            position = len(range(role, self.batches_served, workers)) * self.batch_size
        cached_epoch, order = -1, np.empty(0, dtype=np.int64)
        while True:
            parts = []
            need = self.batch_size
            while need:
                epoch, offset = divmod(position, per_epoch)
                if epoch != cached_epoch:
                    cached_epoch, order = epoch, self.slot_windows(slot, n_slots, epoch)
                take = min(need, per_epoch - offset)
                parts.append(order[offset : offset + take])
                position += take
                need -= take
            starts = np.concatenate(parts) * self.stride
            if info is not None:
                self._worker_position = position
            yield _split(self.tokens.windows(starts, self.context_length + 1))


# ----------------------------------------------------------------------------------------- validation


class ValWindows(Dataset):
    """Fixed, non-overlapping windows of the val shards; at most ``max_windows``, evenly spaced."""

    def __init__(self, sources: Sequence[Source], context_length: int, max_windows: int | None = None) -> None:
        super().__init__()
        self.tokens = _Tokens(sources)
        self.context_length = int(context_length)
        count = window_count(self.tokens.n_tokens, self.context_length, self.context_length)
        if count == 0:
            raise DataError(f"the val split has {self.tokens.n_tokens} tokens, fewer than context_length+1 = "
                            f"{self.context_length + 1}; lower model.context_length or add data")
        index = np.arange(count, dtype=np.int64)
        if max_windows is not None and 0 < max_windows < count:
            # floor(x + 0.5), not round(): banker's rounding could map two neighbours to the same window
            index = np.floor(np.linspace(0, count - 1, int(max_windows)) + 0.5).astype(np.int64)
        self.starts = index * self.context_length

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        start = self.starts[int(i)]
        return _split(self.tokens.windows(np.array([start]), self.context_length + 1)[0])
