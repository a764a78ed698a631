"""A process pool for the CPU-heavy stages, or none at all with one worker.

Python threads cannot run Python code in parallel, and normalising, hashing shingles, scoring languages and
counting n-grams are Python code; so each stage hands *chunks* of a batch to worker processes and gets the
results back in order. Work functions are plain module-level functions of (list of texts, stage config) ->
list of results: they pickle cheaply, and a function that loads a model caches it per process, so each worker
loads it once.

Chunks are cut by characters, not by count, so one chunk of long documents does not keep a single worker busy
while the others wait; there are a few chunks per worker to even out the rest.

Processes are forked where the platform allows (no re-import of torch and friends in every worker: the pool
starts in milliseconds); elsewhere they are spawned. With ``workers=1`` everything runs in this process, which is
also what the tests use for speed.
"""

from __future__ import annotations

import functools
import multiprocessing as mp
from typing import Any, Callable, Sequence, TypeVar

T = TypeVar("T")
CHUNKS_PER_WORKER = 4


def chunk_by_size(texts: Sequence[str], n_chunks: int) -> list[tuple[int, int]]:
    """``[start, end)`` ranges covering ``texts`` in order, each holding about the same number of characters."""
    if not texts:
        return []
    total = sum(map(len, texts)) or 1
    target = total / max(1, n_chunks)
    ranges, start, acc = [], 0, 0
    for i, t in enumerate(texts):
        acc += len(t)
        if acc >= target and i + 1 < len(texts):
            ranges.append((start, i + 1))
            start, acc = i + 1, 0
    ranges.append((start, len(texts)))
    return ranges


def _apply(fn: Callable[[list[str], Any], list[T]], cfg: Any, chunk: list[str]) -> list[T]:
    return fn(chunk, cfg)


class Workers:
    """``map(fn, texts, cfg)`` = ``fn(texts, cfg)``, computed in parallel chunks when there are several workers."""

    def __init__(self, n: int) -> None:
        self.n = max(1, int(n))
        self._pool: Any = None
        if self.n > 1:
            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            self._pool = mp.get_context(method).Pool(self.n)

    def map(self, fn: Callable[[list[str], Any], list[T]], texts: Sequence[str], cfg: Any) -> list[T]:
        texts = list(texts)
        if not texts:
            return []
        if self._pool is None or len(texts) == 1:
            return fn(texts, cfg)
        ranges = chunk_by_size(texts, self.n * CHUNKS_PER_WORKER)
        parts = self._pool.map(functools.partial(_apply, fn, cfg), [texts[a:b] for a, b in ranges], chunksize=1)
        return [r for part in parts for r in part]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool.join()
            self._pool = None

    def terminate(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def __enter__(self) -> "Workers":
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.terminate()
