"""datatrove's deduplication stages, fitted to our pipeline (used by ``datatrove_executor``; see ``datatrove_steps``).

- exact: datatrove's signature / find / filter. The signature step passes documents on (so the MinHash signatures
  come from the same pass), and a document's priority is its task's place in the input, so the first copy in
  input order is the one kept, as in the embedded stage.
- MinHash: datatrove's signature step over *our* word shingles (its own needs spaCy's English tokenizer), which
  also saves each document's whole signature; datatrove's bucket step finds candidate pairs; our cluster step
  verifies each candidate against ``near_dedup.threshold`` and keeps the first document of each cluster; the
  filter drops the rest by their index in the normalised stream.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from datatrove.data import Document as DTDocument
from datatrove.io import get_datafolder
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup.exact_dedup import ExactDedupFilter, ExactDedupSignature
from datatrove.pipeline.dedup.minhash import MinhashDedupCluster, MinhashDedupSignature, _mersenne_prime
from datatrove.utils.binaryio import read_tuples_from_file
from datatrove.utils.hashing import create_hash_func

from scratchllm.data.curation import dedup
from scratchllm.data.curation.config import CurationConfig
from scratchllm.data.curation.datatrove_steps import IdLookup, _Books, _removal, _Step

SIGNATURE_CHUNK = 4096  # shingles hashed at a time: bounds the (shingles x hashes) matrix of a long document


def doc_text(doc: DTDocument) -> bytes:
    """What exact dedup hashes. Bytes, not str: xxhash 4.x refuses str ("Strings must be encoded"). datatrove's
    hash is 64-bit xxhash (the embedded stage: 128-bit BLAKE2b): among 10^9 documents the odds that two different
    texts collide, and one is dropped as a copy, are a few percent."""
    return doc.text.encode("utf-8", "surrogatepass")


def doc_priority(doc: DTDocument) -> int:
    """Of exact copies datatrove keeps the highest priority, then the lowest index in its task: an earlier task
    wins, so the first copy in input order is kept (as in the embedded executor)."""
    return 65535 - int(doc.metadata["rank"])



def _timed(items, seen, clock: list[float]):
    """Yield ``items``, calling ``seen`` on each and adding the time spent pulling them to ``clock[0]``: around a
    datatrove step, the time pulled from its output minus the time pulled from its input is the step's own."""
    it = iter(items)
    while True:
        t0 = time.perf_counter()
        doc = next(it, None)
        clock[0] += time.perf_counter() - t0
        if doc is None:
            return
        seen(doc)
        yield doc

class ExactSignatures(ExactDedupSignature):
    """datatrove's exact stage 1, passing the documents on (so MinHash signatures are computed in the same pass)."""

    def run(self, data, rank: int = 0, world_size: int = 1):
        signatures = []
        for doc_idx, doc in enumerate(data):
            with self.stats.time_stats:
                signatures.extend(self.get_hashes(doc, doc_idx))
            yield doc
        self.save_hashes(rank, signatures)


def full_signature_path(folder: str | Path, rank: int) -> Path:
    return Path(folder) / f"{rank:05d}.fullsig"


class MinhashSignatures(MinhashDedupSignature):
    """datatrove's MinHash stage 1 over *our* word shingles (``dedup.shingles``, ``near_dedup.shingle_size``).

    Besides datatrove's per-bucket files it saves each document's whole signature (one fixed-size row per
    document, in stream order; zeros for a document without words) for the cluster stage's verification. Its own
    constructor loads a word tokenizer (spaCy for English) that our shingling does not need."""

    def __init__(self, output_folder: str, config, shingle_size: int, full_folder: str) -> None:  # noqa: D107
        PipelineStep.__init__(self)
        self.output_folder = get_datafolder(output_folder)
        self.config = config
        self.num_hashes = config.num_buckets * config.hashes_per_bucket
        self._parameters = None
        self._hash_func = create_hash_func(config.hash_config)
        self.language = "en"
        self.word_tokenizer = None
        self.skip_existing_sigs = False
        self.shingle_size = shingle_size
        self.full_folder = full_folder
        self._full = None

    def run(self, data, rank: int = 0, world_size: int = 1):
        path = full_signature_path(self.full_folder, rank)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as self._full:
            super().run(data, rank, world_size)
        self._full = None

    def get_shingles(self, text: str) -> np.ndarray:
        sh = dedup.shingles(text, self.shingle_size)
        if not sh and self._full is not None:  # datatrove writes no signature for it: keep our rows aligned
            self._full.write(np.zeros(self.num_hashes, dtype=np.uint64).tobytes())
        h = self._hash_func  # on bytes: xxhash 4.x refuses str (so datatrove's own shingling fails with it)
        return np.fromiter((h(s.encode("utf-8", "surrogatepass")) for s in sh), dtype=np.uint64,
                           count=len(sh)).reshape((-1, 1))

    def get_signature(self, shingles: np.ndarray) -> list[list[int]]:
        a, b = self.parameters
        low = None
        for i in range(0, shingles.shape[0], SIGNATURE_CHUNK):  # same minimum, bounded memory
            phv = (shingles[i:i + SIGNATURE_CHUNK] * a + b) % _mersenne_prime
            m = phv.min(axis=0)
            low = m if low is None else np.minimum(low, m)
        if self.config.hash_config.precision == 32:
            low = np.bitwise_and(low, self.config.hash_config.max)
        low = low.astype(self.config.hash_config.np_dtype)
        if self._full is not None:
            self._full.write(low.astype(np.uint64).tobytes())
        return [x.tolist() for x in np.split(low, self.config.num_buckets)]


class VerifiedCluster(MinhashDedupCluster):
    """datatrove's MinHash stage 3 (union-find over the candidate pairs of every bucket, one task), with two
    changes that make it the embedded stage's rule: a candidate pair joins a cluster only when the estimated
    Jaccard of the two full signatures (share of equal hashes) is >= ``threshold``; and the document kept is the
    *first* of its cluster in input order (smallest (task, index)), where datatrove keeps the root of its union
    by size, which can be a later copy. Signatures are read row by row (``os.pread``): the task holds the
    union-find of the verified duplicates and nothing per document."""

    def __init__(self, input_folder: str, output_folder: str, config, full_folder: str, threshold: float) -> None:
        super().__init__(input_folder, output_folder, config=config)
        self.full_folder, self.threshold = full_folder, float(threshold)

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        assert world_size == 1, "clustering runs as one task"
        n_hashes = self.config.num_buckets * self.config.hashes_per_bucket
        row = n_hashes * 8
        files: dict[int, int] = {}

        def sig(task: int, doc: int) -> np.ndarray:
            if task not in files:
                files[task] = os.open(full_signature_path(self.full_folder, task), os.O_RDONLY)
            return np.frombuffer(os.pread(files[task], row, doc * row), dtype=np.uint64)

        parent: dict[tuple[int, int], tuple[int, int]] = {}

        def find(x: tuple[int, int]) -> tuple[int, int]:
            root = x
            while parent.get(root, root) != root:
                root = parent[root]
            while parent.get(x, x) != root:  # path compression
                parent[x], x = root, parent[x]
            return root

        try:
            with self.track_time():
                for name in sorted(self.input_folder.list_files(glob_pattern="*.dups")):
                    with self.input_folder.open(name, "rb") as f:
                        for f1, d1, f2, d2 in read_tuples_from_file(f, "4I", lines_to_buffer=self.lines_to_buffer):
                            ra, rb = find((f1, d1)), find((f2, d2))
                            if ra == rb:  # (also a pair already verified through another bucket)
                                continue
                            self.stat_update("candidates")
                            if np.count_nonzero(sig(f1, d1) == sig(f2, d2)) / n_hashes < self.threshold:
                                continue
                            lo, hi = min(ra, rb), max(ra, rb)
                            parent[hi] = lo
                            parent.setdefault(lo, lo)
                removed: dict[int, list[tuple[int, int, int]]] = {}
                for node in parent:
                    root = find(node)
                    if root != node:
                        removed.setdefault(node[0], []).append((node[1], *root))
                for task, docs in removed.items():  # (index, kept document's task, its index), by index
                    with self.output_folder.open(f"{task:06d}.remove", "wb") as out:
                        out.write(np.array(sorted(docs), dtype="<u4").tobytes())
                    self.stat_update("to_remove", value=len(docs))
        finally:
            for fd in files.values():
                os.close(fd)


class _RemovalLog:
    """An exclusion writer for datatrove's filters: each excluded document becomes one of our removal lines."""

    def __init__(self, books: _Books, stage: str, reason: str, detail: str = "") -> None:
        self.books, self.stage, self.reason, self.detail = books, stage, reason, detail

    def __enter__(self) -> "_RemovalLog":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def write(self, doc: DTDocument, rank: int = 0, **kwargs: Any) -> None:
        self.books.remove(_removal(doc, self.stage, self.reason, self.detail))


class ExactFilter(ExactDedupFilter):
    """datatrove's exact stage 3, keeping our books for the ``exact_dedup`` stage."""

    def __init__(self, work: str, cfg: CurationConfig, data_folder: str, config) -> None:
        super().__init__(data_folder, config)
        self.work, self.cfg, self.stage = Path(work), cfg, "exact_dedup"

    def run(self, data, rank: int = 0, world_size: int = 1):
        books = _Books(self, rank)  # type: ignore[arg-type]
        self.exclusion_writer = _RemovalLog(books, self.stage, "exact_duplicate", "identical normalised text")

        upstream, total = [0.0], [0.0]
        inner = super().run(_timed(data, books.count_in, upstream), rank, world_size)
        yield from _timed(inner, books.count_out, total)
        books.st.seconds = max(0.0, total[0] - upstream[0])  # this step's own time, not the reading before it
        books.close()


class NearFilter(_Step):
    """datatrove's MinHash stage 4: drops the documents the cluster stage listed for this task (by their index in
    the normalised stream, so the exact filter before it may already have dropped some)."""

    stage = "near_dedup"

    def run(self, data, rank: int = 0, world_size: int = 1):
        books = _Books(self, rank)
        path = self.work / "minhash" / "remove" / f"{rank:06d}.remove"
        rows = np.fromfile(path, dtype="<u4").reshape(-1, 3).tolist() if path.is_file() else []
        drop = {idx: (task, kept) for idx, task, kept in rows}
        name = IdLookup(self.work)
        detail = f"estimated Jaccard >= {self.cfg.near_dedup.threshold} (datatrove MinHash cluster)"
        for doc in data:
            books.count_in(doc)
            kept = drop.get(doc.metadata["idx"])
            if kept is not None:
                r = _removal(doc, self.stage, "near_duplicate", detail)
                r.duplicate_of = name(*kept)  # the first document of its cluster
                books.remove(r)
                continue
            books.count_out(doc)
            yield doc
        name.close()
        books.close()
