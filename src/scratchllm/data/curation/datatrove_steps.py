"""Our curation stages as datatrove pipeline steps (``executor=datatrove``; the driver is ``datatrove_executor``).

Each step runs inside one datatrove task (rank) and keeps the embedded pipeline's books for it: a ``StageStats``
per stage written to ``<work>/stats/<stage>/<rank>.json`` and the stage's removals to
``<work>/removed/<stage>/<rank>.jsonl``. The finalize step adds them up into the same report.json / report.md /
removed.jsonl as the embedded executor, so both balance the same way (in = kept + removed).

The decisions are ours, reused rather than rewritten: the reader (``readers``: every suffix, every bad-record
rule), ``normalize``, ``language`` (the shipped lid.176.ftz, loaded from its local path: datatrove's own
LanguageFilter would download a model) and ``quality``. Deduplication is datatrove's, disk-backed
(``datatrove_dedup``): exact (signature -> find -> filter) and MinHash (signature -> buckets -> cluster -> filter).
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from datatrove.data import Document as DTDocument
from datatrove.pipeline.base import PipelineStep

from scratchllm.data.curation import language, normalize, quality
from scratchllm.data.curation.config import CurationConfig
from scratchllm.data.curation.datatrove_config import Piece
from scratchllm.data.curation.documents import Document, Removal, utf8_len
from scratchllm.data.curation.readers import (STREAM_ERRORS, _from_object, _lines, _rest_unreadable, _why, decode,
                                              iter_records)
from scratchllm.data.curation.report import StageStats

BATCH_DOCS = 256  # documents scored at a time by the language and quality steps


# ------------------------------------------------------------------------------------------- bookkeeping
def stats_path(work: Path, stage: str, rank: int) -> Path:
    return work / "stats" / stage / f"{rank:05d}.json"


def removed_path(work: Path, stage: str, rank: int) -> Path:
    return work / "removed" / stage / f"{rank:05d}.jsonl"


def ids_path(work: Path, rank: int) -> Path:
    """The ids of a task's normalised documents, one JSON string a line (``.offsets``: 8 bytes a line)."""
    return work / "normalized" / f"{rank:05d}.ids"


class IdLookup:
    """The id of document ``index`` of task ``task`` (as numbered by the normalised stream), by two reads."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.files: dict[int, tuple[Any, Any]] = {}

    def __call__(self, task: int, index: int) -> str:
        if task not in self.files:
            path = ids_path(self.work, task)
            self.files[task] = (open(path.with_suffix(".offsets"), "rb"), open(path, "rb"))
        offsets, ids = self.files[task]
        offsets.seek(8 * index)
        ids.seek(int.from_bytes(offsets.read(8), "little"))
        return json.loads(ids.readline())

    def close(self) -> None:
        for a, b in self.files.values():
            a.close()
            b.close()
        self.files = {}


def stats_to_json(s: StageStats) -> dict[str, Any]:
    return {"name": s.name, "docs_in": s.docs_in, "docs_out": s.docs_out, "bytes_in": s.bytes_in,
            "bytes_out": s.bytes_out, "seconds": s.seconds, "removed": dict(s.removed),
            "removed_bytes": dict(s.removed_bytes), "examples": s.examples, "notes": s.notes,
            "tokens_out": s.tokens_out}


class _Books:
    """One stage's counts and removal file for one task."""

    def __init__(self, step: "_Step", rank: int) -> None:
        self.step, self.rank = step, rank
        self.st = StageStats(step.stage)
        path = removed_path(step.work, step.stage, rank)
        path.parent.mkdir(parents=True, exist_ok=True)
        # "w": a task re-run after a crash replaces what its first attempt wrote
        self.file = open(path, "w", encoding="utf-8") if step.cfg.write_removed else None
        self.lines = 0

    def remove(self, r: Removal) -> None:
        self.st.remove(r, self.step.cfg.examples, self.step.cfg.example_chars)
        if self.file is not None:
            self.file.write(json.dumps(r.to_json(), ensure_ascii=False) + "\n")
            self.lines += 1

    def count_in(self, doc: DTDocument) -> None:
        self.st.docs_in += 1
        self.st.bytes_in += doc.metadata["nbytes"]

    def count_out(self, doc: DTDocument) -> None:
        self.st.docs_out += 1
        self.st.bytes_out += doc.metadata["nbytes"]

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        path = stats_path(self.step.work, self.step.stage, self.rank)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**stats_to_json(self.st), "removed_lines": self.lines}), encoding="utf-8")


class _Step(PipelineStep):
    type = "scratchllm"
    stage = ""

    def __init__(self, work: str, cfg: CurationConfig) -> None:
        super().__init__()
        self.work, self.cfg = Path(work), cfg

    @property
    def name(self) -> str:  # what datatrove's logs and stats call the step
        return self.stage


def _removal(doc: DTDocument, stage: str, reason: str, detail: str = "") -> Removal:
    return Removal(doc.id, stage, reason, detail, nbytes=doc.metadata["nbytes"], text=doc.text)


# ------------------------------------------------------------------------------------------- read
def iter_jsonl_piece(path: Path, start: int, end: int, cfg: CurationConfig) -> Iterator[Document | Removal]:
    """The records of the lines of a JSONL file that *start* in ``[start, end)``: the reader's rules for each line
    (``readers._from_object``; too-long lines, invalid JSON), and its ``path:line`` ids (lines before ``start``
    are counted, so the ids are those the embedded executor gives)."""
    read = cfg.read
    limit = int(read.max_record_mb * 1e6)
    lineno = 0
    try:
        with open(path, "rb") as f:
            if start > 0:
                f.seek(start - 1)
                if f.read(1) != b"\n":  # mid-line: that line is the previous piece's
                    for _ in _lines(f, limit):
                        break
                first = f.tell()
                f.seek(0)
                while f.tell() < first:
                    lineno += f.read(min(1 << 20, first - f.tell())).count(b"\n")
            lines = _lines(f, limit)
            while f.tell() < end:
                raw = next(lines, None)
                if raw is None:
                    break
                lineno += 1
                default_id = f"{path}:{lineno}"
                if isinstance(raw, int):
                    yield Removal(default_id, "read", "record_too_long",
                                  f"{raw:,} bytes on one line; raise read.max_record_mb to read it", nbytes=raw)
                    continue
                if not raw.strip():
                    continue
                line, bad = decode(raw, read.encoding)
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    yield Removal(default_id, "read", "invalid_json", f"{e.msg} at column {e.colno}",
                                  nbytes=len(raw), text=line)
                    continue
                record = _from_object(obj, default_id, read, len(raw), line)
                if isinstance(record, Document):
                    record.bad_bytes += bad
                yield record
    except STREAM_ERRORS as e:
        if lineno == 0:
            yield Removal(str(path), "read", "unreadable_file", _why(e))
        else:
            yield _rest_unreadable(path, str(lineno + 1), f"lines up to {lineno}", e)


class ReadStep(_Step):
    """Our reader over this task's pieces of the input (``datatrove_config.plan_pieces``)."""

    stage = "read"

    def __init__(self, work: str, cfg: CurationConfig, plan: list[list[Piece]]) -> None:
        super().__init__(work, cfg)
        self.plan = plan

    def _records(self, rank: int) -> Iterator[Document | Removal]:
        for path, start, end in self.plan[rank]:
            if start is None:
                yield from iter_records([Path(path)], self.cfg.read)
            else:
                yield from iter_jsonl_piece(Path(path), start, int(end), self.cfg)

    def run(self, data, rank: int = 0, world_size: int = 1):
        assert world_size == len(self.plan), f"planned for {len(self.plan)} tasks, running {world_size}"
        books = _Books(self, rank)
        it = self._records(rank)
        while True:
            t0 = time.perf_counter()
            r = next(it, None)
            books.st.seconds += time.perf_counter() - t0
            if r is None:
                break
            books.st.docs_in += 1
            if isinstance(r, Removal):
                books.st.bytes_in += r.nbytes
                books.remove(r)
                continue
            nbytes = utf8_len(r.text)
            books.st.bytes_in += nbytes
            books.st.docs_out += 1
            books.st.bytes_out += nbytes
            yield DTDocument(text=r.text, id=r.id, metadata={"nbytes": nbytes, "bad_bytes": r.bad_bytes,
                                                             "rank": rank})
        books.close()


class NormalizeStep(_Step):
    """Our normaliser; also saves the normalised documents of the task (``<work>/normalized/<rank>.jsonl``), which
    the filter pass reads again once the dedup stages know what to drop."""

    stage = "normalize"

    def run(self, data, rank: int = 0, world_size: int = 1):
        books = _Books(self, rank)
        out = self.work / "normalized" / f"{rank:05d}.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)
        notes = books.st.notes
        # and each document's id with its offset, so a later step can name any document by (task, index)
        with open(out, "w", encoding="utf-8") as f, open(ids_path(self.work, rank), "wb") as ids, \
                open(ids_path(self.work, rank).with_suffix(".offsets"), "wb") as offsets:
            for doc in data:
                books.count_in(doc)
                t0 = time.perf_counter()
                if doc.metadata.get("bad_bytes"):
                    notes["undecodable byte sequences"] = notes.get("undecodable byte sequences", 0) + \
                        doc.metadata["bad_bytes"]
                    notes["documents with undecodable bytes"] = notes.get("documents with undecodable bytes", 0) + 1
                text = normalize.normalize_text(doc.text, self.cfg.normalize)
                if not text:
                    books.remove(_removal(doc, self.stage, "empty", "no text after normalisation"))
                    books.st.seconds += time.perf_counter() - t0
                    continue
                if text != doc.text:
                    notes["documents changed"] = notes.get("documents changed", 0) + 1
                    doc.text, doc.metadata["nbytes"] = text, utf8_len(text)
                f.write(json.dumps({"id": doc.id, "text": doc.text}, ensure_ascii=False) + "\n")
                offsets.write(ids.tell().to_bytes(8, "little"))
                ids.write(json.dumps(doc.id).encode() + b"\n")
                books.count_out(doc)
                books.st.seconds += time.perf_counter() - t0
                yield doc
        books.close()


# ------------------------------------------------------------------------------------------- filter pass
class LoadNormalized(_Step):
    """This task's normalised documents, numbered as the signature steps numbered them."""

    stage = "load"

    def run(self, data, rank: int = 0, world_size: int = 1):
        with open(self.work / "normalized" / f"{rank:05d}.jsonl", encoding="utf-8") as f:
            for idx, line in enumerate(f):
                rec = json.loads(line)
                yield DTDocument(text=rec["text"], id=rec["id"],
                                 metadata={"nbytes": utf8_len(rec["text"]), "idx": idx, "rank": rank})


def _batched(data, n: int) -> Iterator[list[DTDocument]]:
    batch: list[DTDocument] = []
    for doc in data:
        batch.append(doc)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch


class LanguageStep(_Step):
    """Our language stage (fastText lid.176.ftz from its local path, or lingua): nothing is downloaded."""

    stage = "language"

    def run(self, data, rank: int = 0, world_size: int = 1):
        books = _Books(self, rank)
        detected = books.st.notes.setdefault("detected", {})
        for batch in _batched(data, BATCH_DOCS):
            t0 = time.perf_counter()
            results = language.identify_batch([d.text for d in batch], self.cfg.language)
            books.st.seconds += time.perf_counter() - t0
            for doc, (lang, conf) in zip(batch, results):
                books.count_in(doc)
                detected[lang] = detected.get(lang, 0) + 1
                bad = language.verdict(lang, conf, self.cfg.language)
                if bad is not None:
                    books.remove(_removal(doc, self.stage, bad[0], bad[1]))
                    continue
                books.count_out(doc)
                yield doc
        books.close()


class QualityStep(_Step):
    """Our Gopher / C4 heuristics, with the profile's thresholds."""

    stage = "quality"

    def run(self, data, rank: int = 0, world_size: int = 1):
        books = _Books(self, rank)
        for batch in _batched(data, BATCH_DOCS):
            t0 = time.perf_counter()
            verdicts = quality.verdict_batch([d.text for d in batch], self.cfg.quality)
            books.st.seconds += time.perf_counter() - t0
            for doc, bad in zip(batch, verdicts):
                books.count_in(doc)
                if bad is not None:
                    books.remove(_removal(doc, self.stage, bad[0], bad[1]))
                    continue
                books.count_out(doc)
                yield doc
        books.close()


@functools.lru_cache(maxsize=2)
def _tokenizer(spec_json: str):
    from scratchllm.tokenizers import build_tokenizer

    return build_tokenizer(json.loads(spec_json))


class TokenShardWriter(_Step):
    """The writer block: tokenises each kept document into this task's shards (``<work>/tokens/<rank>/``, our
    shard format via ``ShardWriter``, split by the seeded hash of the id); finalize numbers them globally."""

    stage = "tokenize"

    def run(self, data, rank: int = 0, world_size: int = 1):
        import shutil

        from scratchllm.data.curation.pipeline import assign_split
        from scratchllm.data.prepare import ShardWriter
        from scratchllm.data.shards import dtype_for_vocab
        from scratchllm.data.tokenize import encode_document

        books = _Books(self, rank)
        folder = self.work / "tokens" / f"{rank:05d}"
        shutil.rmtree(folder, ignore_errors=True)  # what a crashed attempt left
        folder.mkdir(parents=True)
        tokenizer = _tokenizer(json.dumps(self.cfg.tokenizer, sort_keys=True, default=str))
        dtype = dtype_for_vocab(tokenizer.vocab_size)
        writers = {s: ShardWriter(folder, s, tokenizer, self.cfg.shard_tokens) for s in ("train", "val")}
        kept = open(folder / "kept.jsonl", "w", encoding="utf-8") if self.cfg.keep_text else None
        # each split's last document: finalize may move it to the other split if that one ends up empty
        last: dict[str, tuple[str, np.ndarray, int]] = {}
        for doc in data:
            books.count_in(doc)
            t0 = time.perf_counter()
            split = assign_split(doc.id, self.cfg.seed, self.cfg.val_fraction)
            ids = encode_document(tokenizer, doc.text).astype(dtype)
            before = writers[split].total + writers[split].buffered
            writers[split].add_document(ids)
            last[split] = (doc.id, ids, writers[split].total + writers[split].buffered - before)
            if kept is not None:
                kept.write(json.dumps({"id": doc.id, "split": split, "text": doc.text}, ensure_ascii=False) + "\n")
            books.count_out(doc)
            books.st.seconds += time.perf_counter() - t0
            yield doc
        for w in writers.values():
            w.flush()
        if kept is not None:
            kept.close()
        books.st.tokens_out = writers["train"].total + writers["val"].total
        for split, (_, ids, _) in last.items():
            np.save(folder / f"last_{split}.npy", ids)
        (folder / "summary.json").write_text(json.dumps({
            split: {"files": [p.name for p in w.paths], "tokens": w.total, "documents": w.documents,
                    "last": {"id": last[split][0], "appended": last[split][2]} if split in last else None}
            for split, w in writers.items()}), encoding="utf-8")
        books.close()


class Finalize(_Step):
    """One task at the end: the report, removed.jsonl, the globally numbered shards and the manifest."""

    stage = "finalize"

    def __init__(self, work: str, cfg: CurationConfig, context: dict[str, Any]) -> None:
        super().__init__(work, cfg)
        self.context = context

    def run(self, data, rank: int = 0, world_size: int = 1):
        from scratchllm.data.curation.datatrove_finalize import finalize

        finalize(self.work, self.cfg, self.context)
        return iter(())
