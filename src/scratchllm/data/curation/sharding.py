"""Pass 2 of ``curate``: the kept documents (``curated.jsonl``, with their split) -> train and val shards.

The tokenizer runs in the worker pool a batch at a time (``encode_chunk``); the shards are written here, in
file order, so the result does not depend on the number of workers. The last document of each split is held
back until the end: when one split would otherwise be empty (a tiny corpus), the other's last document moves
there. A single surviving document cannot make two splits: ``write_shards`` then writes nothing and returns
None, and ``curate`` reports it once the report is in place.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from scratchllm.data.curation.config import CurationConfig
from scratchllm.data.curation.documents import utf8_len
from scratchllm.data.curation.parallel import Workers
from scratchllm.data.curation.report import StageStats
from scratchllm.data.prepare import ShardWriter
from scratchllm.data.shards import dtype_for_vocab
from scratchllm.data.tokenize import encode_document
from scratchllm.tokenizers import Tokenizer

log = logging.getLogger(__name__)

MAX_BATCH_RECORDS = 50_000  # also bounds a batch of many tiny records


def encode_chunk(texts: list[str], tokenizer: Tokenizer) -> list[np.ndarray]:
    """Worker entry point: token ids of each document, in the shard dtype (cheap to send back)."""
    dtype = dtype_for_vocab(tokenizer.vocab_size)
    return [encode_document(tokenizer, t).astype(dtype) for t in texts]


def iter_curated(path: Path, batch_chars: int) -> Iterator[list[dict[str, str]]]:
    """``curated.jsonl`` in batches of about ``batch_chars`` characters."""
    batch: list[dict[str, str]] = []
    chars = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            batch.append(rec)
            chars += len(rec["text"])
            if chars >= batch_chars or len(batch) >= MAX_BATCH_RECORDS:
                yield batch
                batch, chars = [], 0
    if batch:
        yield batch


def write_shards(curated: Path, folder: Path, tokenizer: Tokenizer, pool: Workers, cfg: CurationConfig,
                 stats: StageStats, on_batch: Callable[[int], None]) -> dict[str, Any] | None:
    """Tokenise ``curated`` into shards in ``folder``; the manifest's split fields, or None when only one
    document survived (nothing written)."""
    t0 = time.perf_counter()
    writers = {split: ShardWriter(folder, split, tokenizer, cfg.shard_tokens) for split in ("train", "val")}
    pending: dict[str, tuple[str, np.ndarray] | None] = {"train": None, "val": None}
    for batch in iter_curated(curated, int(cfg.batch_mb * 1e6)):
        arrays = pool.map(encode_chunk, [r["text"] for r in batch], tokenizer)
        for rec, ids in zip(batch, arrays):
            nbytes = utf8_len(rec["text"])
            stats.docs_in += 1
            stats.bytes_in += nbytes
            stats.docs_out += 1
            stats.bytes_out += nbytes
            split = rec["split"]
            if pending[split] is not None:
                writers[split].add_document(pending[split][1])
            pending[split] = (rec["id"], ids)
        on_batch(len(batch))
    for split, other in (("val", "train"), ("train", "val")):
        if writers[split].documents == 0 and pending[split] is None and pending[other] is not None \
                and writers[other].documents >= 1:
            pending[split], pending[other] = pending[other], None
            stats.notes[f"moved to {split}"] = pending[split][0]  # type: ignore[index]
            log.info("the %s split was empty: moved document %s there", split, pending[split][0])  # type: ignore
    if any(writers[s].documents == 0 and pending[s] is None for s in ("train", "val")):
        return None  # one document in all (nothing written yet): no split could borrow from the other
    for split in ("train", "val"):
        if pending[split] is not None:
            writers[split].add_document(pending[split][1])  # type: ignore[index]
        writers[split].flush()
    stats.seconds += time.perf_counter() - t0
    stats.tokens_out = writers["train"].total + writers["val"].total
    return {
        "train": [p.name for p in writers["train"].paths],
        "val": [p.name for p in writers["val"].paths],
        "train_tokens": writers["train"].total,
        "val_tokens": writers["val"].total,
        "documents": {"train": writers["train"].documents, "val": writers["val"].documents},
    }
