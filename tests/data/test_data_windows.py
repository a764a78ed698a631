"""Train stream sharding (ranks x workers), resume arithmetic, seeded order; validation windows.

Tokens are ``arange`` so a window's first token *is* its start offset: every check reads offsets off x[:, 0].
"""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from scratchllm.data import write_shard
from scratchllm.data.windows import (
    TrainWindowStream,
    ValWindows,
    epoch_permutation,
    slot_window_starts,
    window_count,
)
from scratchllm.errors import DataError


def _xy(batch):
    """A batch dict as (inputs, labels)."""
    return batch["input_ids"], batch["labels"]

T, STRIDE, B = 8, 4, 4
N_WINDOWS = 48  # 4 slots x 12 windows = 3 batches of 4 per slot per epoch
N_TOKENS = (N_WINDOWS - 1) * STRIDE + T + 1


@pytest.fixture
def shard(tmp_path):
    path = tmp_path / "train_000000.bin"
    write_shard(path, np.arange(N_TOKENS), tokenizer="test", vocab_size=1000)
    return path


def _stream(sources, **kw) -> TrainWindowStream:
    args = dict(context_length=T, batch_size=B, stride=STRIDE, seed=7)
    args.update(kw)
    return TrainWindowStream(sources, **args)


def _starts(batches) -> list[int]:
    return [int(v) for batch in batches for v in batch["input_ids"][:, 0]]


def test_window_count() -> None:
    assert window_count(N_TOKENS, T, STRIDE) == N_WINDOWS
    assert window_count(T, T, 1) == 0 and window_count(T + 1, T, 5) == 1


def test_pure_function_serves_every_window_once_per_epoch() -> None:
    all_starts = set(range(0, N_WINDOWS * STRIDE, STRIDE))
    for epoch in range(3):
        served = [
            slot_window_starts(N_TOKENS, context_length=T, stride=STRIDE, seed=7, epoch=epoch, rank=r,
                               world_size=2, worker_id=w, num_workers=2).tolist()
            for r in range(2) for w in range(2)
        ]
        flat = sum(served, [])
        assert len(flat) == N_WINDOWS and set(flat) == all_starts
        assert {len(s) for s in served} == {N_WINDOWS // 4}


def test_seeded_order() -> None:
    a, b = epoch_permutation(100, 1, 0), epoch_permutation(100, 1, 0)
    np.testing.assert_array_equal(a, b)
    assert sorted(a.tolist()) == list(range(100))
    assert not np.array_equal(a, epoch_permutation(100, 1, 1))  # new order every epoch
    assert not np.array_equal(a, epoch_permutation(100, 2, 0))  # and per seed


def test_batches_shapes_and_shift(shard) -> None:
    x, y = _xy(next(iter(_stream([shard]))))
    assert x.shape == y.shape == (B, T) and x.dtype == y.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1]) and torch.equal(y[:, -1], x[:, -1] + 1)
    assert torch.equal(x - x[:, :1], torch.arange(T).expand(B, T))  # contiguous token runs


def test_stream_is_infinite_and_epochs_reshuffle(shard) -> None:
    batches = list(itertools.islice(iter(_stream([shard])), 2 * N_WINDOWS // B + 1))
    starts = _starts(batches)
    e0, e1 = starts[:N_WINDOWS], starts[N_WINDOWS : 2 * N_WINDOWS]
    assert sorted(e0) == sorted(e1) == list(range(0, N_WINDOWS * STRIDE, STRIDE))
    assert e0 != e1
    again = list(itertools.islice(iter(_stream([shard])), 5))
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(again, batches))  # reproducible with the seed


def test_slot_sequence_matches_pure_function(shard) -> None:
    # rank 1 of 2 in the main process (num_workers=0): batches straddle epochs seamlessly
    per_epoch = N_WINDOWS // 2
    got = _starts(itertools.islice(iter(_stream([shard], rank=1, world_size=2)), 2 * per_epoch // B))
    expect = [s for e in range(2) for s in slot_window_starts(
        N_TOKENS, context_length=T, stride=STRIDE, seed=7, epoch=e, rank=1, world_size=2).tolist()]
    assert got == expect


def test_dataloader_two_ranks_two_workers_cover_epoch(shard) -> None:
    served = []
    for rank in range(2):
        loader = DataLoader(_stream([shard], rank=rank, world_size=2), batch_size=None, num_workers=2)
        batches = list(itertools.islice(iter(loader), N_WINDOWS // 2 // B))  # one epoch of this rank
        starts = _starts(batches)
        # batch k came from worker k % 2: check it against that worker's slot in the pure function
        for w in range(2):
            expect = slot_window_starts(N_TOKENS, context_length=T, stride=STRIDE, seed=7, epoch=0, rank=rank,
                                        world_size=2, worker_id=w, num_workers=2).tolist()
            assert _starts(batches[w::2]) == expect
        served += starts
    assert sorted(served) == list(range(0, N_WINDOWS * STRIDE, STRIDE))  # every window exactly once


@pytest.mark.parametrize("k", [1, 5, 13])
def test_resume_single_process(shard, k: int) -> None:
    fresh = list(itertools.islice(iter(_stream([shard])), k + 6))
    resumed = list(itertools.islice(iter(_stream([shard], batches_served=k)), 6))
    assert _starts(resumed) == _starts(fresh[k:])


@pytest.mark.parametrize("k", [5, 14])
def test_resume_two_workers(shard, k: int) -> None:
    fresh = list(itertools.islice(iter(DataLoader(_stream([shard]), batch_size=None, num_workers=2)), k + 6))
    resumed_stream = _stream([shard], batches_served=k)
    resumed = list(itertools.islice(iter(DataLoader(resumed_stream, batch_size=None, num_workers=2)), 6))
    assert _starts(resumed) == _starts(fresh[k:])
    assert all(torch.equal(a["labels"], b["labels"]) for a, b in zip(resumed, fresh[k:]))


def test_windows_cross_shard_boundaries(tmp_path) -> None:
    paths = []
    for i, (a, b) in enumerate([(0, 10), (10, 13), (13, 40)]):
        p = tmp_path / f"train_{i:06d}.bin"
        write_shard(p, np.arange(a, b), tokenizer="test", vocab_size=100)
        paths.append(p)
    stream = TrainWindowStream(paths, context_length=T, batch_size=window_count(40, T, 1), stride=1, seed=0)
    x, y = _xy(next(iter(stream)))
    assert sorted(x[:, 0].tolist()) == list(range(window_count(40, T, 1)))
    assert torch.equal(x - x[:, :1], torch.arange(T).expand_as(x)) and torch.equal(y, x + 1)


def test_stream_pickles_without_data(shard) -> None:
    stream = _stream([shard])
    next(iter(stream))  # opens the memory map
    blob = pickle.dumps(stream)
    assert len(blob) < 5000
    assert torch.equal(next(iter(pickle.loads(blob)))["input_ids"], next(iter(stream))["input_ids"])


def test_too_little_data(shard) -> None:
    with pytest.raises(DataError, match="context_length"):
        _stream([np.arange(T)])
    with pytest.raises(DataError, match="num_workers"):
        next(iter(_stream([np.arange(T + 1)], rank=1, world_size=2)))


def test_val_windows(shard) -> None:
    full = ValWindows([shard], context_length=T)
    assert len(full) == window_count(N_TOKENS, T, T)
    x, y = _xy(full[3])
    assert x.shape == (T,) and x.dtype == torch.int64 and int(x[0]) == 3 * T and torch.equal(y, x + 1)
    capped = ValWindows([shard], context_length=T, max_windows=5)
    starts = [int(capped[i]["input_ids"][0]) for i in range(len(capped))]
    assert len(capped) == 5 and starts[0] == 0 and starts[-1] == (len(full) - 1) * T
    assert len(set(starts)) == 5 and starts == sorted(starts)
    gaps = np.diff(starts) // T
    assert gaps.max() - gaps.min() <= 1  # evenly spaced
    batch = next(iter(DataLoader(full, batch_size=4)))
    assert batch["input_ids"].shape == (4, T)
