"""``curate``: input files -> read -> normalise -> exact dedup -> near dedup -> language -> quality -> shards.

The run streams: records are read in batches of about ``batch_mb`` MB of text, and each batch goes through every
stage before the next is read, so memory holds one batch plus what deduplication must remember (a digest and a
MinHash signature per kept document). Each CPU-heavy stage sends its part of the batch to the worker pool;
the decisions that need the whole history (is this a duplicate of something kept earlier?) are taken here, in
order, so the result does not depend on the number of workers.

Two passes over the kept text, because some tokenizers depend on it: pass 1 curates and appends every kept
document to ``curated.jsonl`` (with its split), pass 2 (``sharding.py``) tokenises that file into the shards. A
tokenizer fitted on data (char) learns the train split's characters between the two; the file is deleted at the
end unless ``keep_text=true`` (handy for training a BPE on the curated text).

The validation split is chosen per document from a hash of (``seed``, id): reproducible, independent of input
order and of the number of workers. If one split ends up empty (a tiny corpus), the last document of the other
is moved over, and a single surviving document is an error (raised once report.md is in place to say why).

The output folder is built under a temporary name and renamed at the end (``data/folders.py``), holding the
output's lock the whole time: a second run to the same output is refused with one line while the first runs,
and ``overwrite=false`` is checked under the lock. It has the prepared-folder layout (manifest.json,
tokenizer.json, train_*.bin, val_*.bin) that ``data=shards data.path=<output>`` trains on, plus report.json,
report.md and removed.jsonl.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, Iterator

from scratchllm.data.curation import dedup, language, normalize, quality
from scratchllm.data.curation.config import CurationConfig, _plain
from scratchllm.data.curation.documents import Document, Removal, utf8_len
from scratchllm.data.curation.parallel import Workers
from scratchllm.data.curation.readers import Record, iter_records, resolve_inputs, total_bytes
from scratchllm.data.curation.report import StageStats, build_report, write_report
from scratchllm.data.curation.sharding import MAX_BATCH_RECORDS, encode_chunk, write_shards
from scratchllm.data.folders import (MANIFEST, TOKENIZER_FILE, PreparedData, building_folder, folder_lock,
                                     load_prepared, prepared_folder_hint, write_manifest)
from scratchllm.data.shards import FORMAT_VERSION
from scratchllm.data.tokenize import DOC_SEPARATOR, needs_fit
from scratchllm.errors import ConfigError, DataError
from scratchllm.tokenizers import build_tokenizer

log = logging.getLogger(__name__)

REMOVED_FILE = "removed.jsonl"
CURATED_FILE = "curated.jsonl"
__all__ = ["CURATED_FILE", "REMOVED_FILE", "CurationResult", "assign_split", "curate", "encode_chunk"]


@dataclass
class CurationResult:
    """What ``curate`` made: the folder, its report (as written to report.json) and the shards, if any."""

    output: Path
    report: dict[str, Any]
    prepared: PreparedData | None


def assign_split(doc_id: str, seed: int, val_fraction: float) -> str:
    """``"val"`` for about ``val_fraction`` of ids, chosen by a seeded hash (stable across runs and workers)."""
    h = hashlib.blake2b(f"{seed}\0{doc_id}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return "val" if int.from_bytes(h, "little") / 2**64 < val_fraction else "train"


def _check_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output={out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()):
        ours = (out / MANIFEST).is_file() or (out / "report.json").is_file()
        if not ours:
            raise ConfigError(f"output={out} is a non-empty folder that is not a prepared folder; choose a new or "
                              "empty folder")
        if not overwrite:
            raise ConfigError(f"output={out} already holds a prepared folder; pass overwrite=true to replace it")


def _timed(records: Iterator[Record], stats: StageStats) -> Iterator[Record]:
    """``records``, adding the time spent producing them (reading, decoding, parsing) to ``stats.seconds``."""
    it = iter(records)
    while True:
        t0 = time.perf_counter()
        try:
            r = next(it)
        except StopIteration:
            stats.seconds += time.perf_counter() - t0
            return
        stats.seconds += time.perf_counter() - t0
        yield r


def _batches(records: Iterator[Record], batch_chars: int) -> Iterator[list[Record]]:
    batch: list[Record] = []
    chars = 0
    for r in records:
        batch.append(r)
        chars += len(r.text)
        if chars >= batch_chars or len(batch) >= MAX_BATCH_RECORDS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


class _Bars:
    """One tqdm bar per stage (documents), plus bytes for reading; nothing at all with progress=false."""

    def __init__(self, names: list[str], enabled: bool, read_total: int | None) -> None:
        self.bars: dict[str, Any] = {}
        if not enabled:
            return
        from tqdm.auto import tqdm

        self.bars["read"] = tqdm(total=read_total, desc="read", unit="B", unit_scale=True, position=0, leave=True)
        for i, name in enumerate(names[1:], start=1):
            self.bars[name] = tqdm(desc=name, unit="doc", position=i, leave=True)

    def update(self, name: str, n: int, removed: int | None = None) -> None:
        bar = self.bars.get(name)
        if bar is not None:
            bar.update(n)
            if removed is not None:
                bar.set_postfix(removed=removed, refresh=False)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


class _Run:
    """The state of one curation run: stage statistics, dedup indexes, and the open output files."""

    def __init__(self, cfg: CurationConfig, folder: Path, stack: ExitStack) -> None:
        self.cfg = cfg
        names = ["read", "normalize"]
        names += ["exact_dedup"] if cfg.exact_dedup.enabled else []
        names += ["near_dedup"] if cfg.near_dedup.enabled else []
        names += ["language"] if cfg.language.enabled else []
        names += ["quality"] if cfg.quality.enabled else []
        names += ["tokenize"]
        self.names = names
        self.stats = {n: StageStats(n) for n in names}
        self.exact = dedup.ExactDeduplicator()
        self.near = dedup.NearDeduplicator(cfg.near_dedup) if cfg.near_dedup.enabled else None
        self.removed_file: IO[str] | None = (
            stack.enter_context(open(folder / REMOVED_FILE, "w", encoding="utf-8")) if cfg.write_removed else None)
        self.removed_lines = 0
        self.curated = stack.enter_context(open(folder / CURATED_FILE, "w", encoding="utf-8"))
        self.charset: set[str] | None = None
        self.bars: _Bars | None = None
        self._deferred: list[Removal] = []

    # ---- bookkeeping -------------------------------------------------------------------------------------
    def remove(self, r: Removal) -> None:
        self.stats[r.stage].remove(r, self.cfg.examples, self.cfg.example_chars)
        if self.removed_file is not None:
            self.removed_file.write(json.dumps(r.to_json(), ensure_ascii=False) + "\n")
            self.removed_lines += 1

    def _begin(self, name: str, docs: list[Document]) -> tuple[StageStats, float]:
        s = self.stats[name]
        s.docs_in += len(docs)
        s.bytes_in += sum(d.nbytes for d in docs)
        return s, time.perf_counter()

    def _end(self, s: StageStats, t0: float, kept: list[Document], n_in: int) -> list[Document]:
        s.docs_out += len(kept)
        s.bytes_out += sum(d.nbytes for d in kept)
        s.seconds += time.perf_counter() - t0
        if self.bars is not None:
            self.bars.update(s.name, n_in, s.n_removed)
        return kept

    # ---- stages ------------------------------------------------------------------------------------------
    def read(self, batch: list[Record]) -> list[Document]:
        s = self.stats["read"]
        docs: list[Document] = []
        for r in batch:
            if isinstance(r, Removal):
                s.docs_in += 1
                s.bytes_in += r.nbytes
                self.remove(r)
            else:
                r.nbytes = utf8_len(r.text)
                s.docs_in += 1
                s.bytes_in += r.nbytes
                s.docs_out += 1
                s.bytes_out += r.nbytes
                docs.append(r)
        return docs

    def normalize(self, docs: list[Document], pool: Workers) -> list[Document]:
        s, t0 = self._begin("normalize", docs)
        texts = pool.map(normalize.normalize_batch, [d.text for d in docs], self.cfg.normalize)
        kept = []
        for d, text in zip(docs, texts):
            if d.bad_bytes:
                s.notes["undecodable byte sequences"] = s.notes.get("undecodable byte sequences", 0) + d.bad_bytes
                s.notes["documents with undecodable bytes"] = s.notes.get("documents with undecodable bytes", 0) + 1
            if not text:
                self.remove(Removal(d.id, "normalize", "empty", "no text after normalisation", nbytes=d.nbytes,
                                    text=d.text))
                continue
            if text != d.text:
                s.notes["documents changed"] = s.notes.get("documents changed", 0) + 1
                d.text, d.nbytes = text, utf8_len(text)
            kept.append(d)
        return self._end(s, t0, kept, len(docs))

    def exact_dedup(self, docs: list[Document]) -> list[Document]:
        s, t0 = self._begin("exact_dedup", docs)
        kept = []
        for d in docs:
            first = self.exact.check(d.id, d.text)
            if first is None:
                kept.append(d)
            else:  # written after the near stage, which may remove ``first`` in favour of its representative
                self._deferred.append(Removal(d.id, "exact_dedup", "exact_duplicate", duplicate_of=first,
                                              nbytes=d.nbytes, text=d.text))
        s.docs_out += len(kept)
        s.bytes_out += sum(d.nbytes for d in kept)
        s.seconds += time.perf_counter() - t0
        if self.bars is not None:
            self.bars.update(s.name, len(docs))
        return kept

    def flush_deferred(self, representative: dict[str, str]) -> None:
        """Record the exact stage's removals, naming the kept representative when near dedup removed the
        first copy later in the same batch."""
        s = self.stats.get("exact_dedup")
        for r in self._deferred:
            r.duplicate_of = representative.get(r.duplicate_of or "", r.duplicate_of)
            self.remove(r)
        if s is not None and self.bars is not None:
            self.bars.update(s.name, 0, s.n_removed)
        self._deferred = []

    def near_dedup(self, docs: list[Document], pool: Workers, representative: dict[str, str]) -> list[Document]:
        assert self.near is not None
        s, t0 = self._begin("near_dedup", docs)
        sigs = pool.map(dedup.signature_batch, [d.text for d in docs], self.cfg.near_dedup)
        kept = []
        for d, sig in zip(docs, sigs):
            hit = self.near.check(d.id, sig)
            if hit is None:
                kept.append(d)
            else:
                rep, est, matched = hit
                representative[d.id] = rep
                detail = f"estimated Jaccard {est:.2f}" + (f" with {matched}" if matched != rep else "")
                self.remove(Removal(d.id, "near_dedup", "near_duplicate", detail, duplicate_of=rep, nbytes=d.nbytes,
                                    text=d.text))
                if self.cfg.exact_dedup.enabled:
                    self.exact.redirect(d.text, rep)
        return self._end(s, t0, kept, len(docs))

    def language(self, docs: list[Document], pool: Workers) -> list[Document]:
        s, t0 = self._begin("language", docs)
        results = pool.map(language.identify_batch, [d.text for d in docs], self.cfg.language)
        detected = s.notes.setdefault("detected", {})
        kept = []
        for d, (lang, conf) in zip(docs, results):
            detected[lang] = detected.get(lang, 0) + 1
            bad = language.verdict(lang, conf, self.cfg.language)
            if bad is None:
                kept.append(d)
            else:
                self.remove(Removal(d.id, "language", bad[0], bad[1], nbytes=d.nbytes, text=d.text))
        s.notes["detected"] = dict(sorted(detected.items(), key=lambda kv: -kv[1]))
        return self._end(s, t0, kept, len(docs))

    def quality(self, docs: list[Document], pool: Workers) -> list[Document]:
        s, t0 = self._begin("quality", docs)
        verdicts = pool.map(quality.verdict_batch, [d.text for d in docs], self.cfg.quality)
        kept = []
        for d, bad in zip(docs, verdicts):
            if bad is None:
                kept.append(d)
            else:
                self.remove(Removal(d.id, "quality", bad[0], bad[1], nbytes=d.nbytes, text=d.text))
        return self._end(s, t0, kept, len(docs))

    def keep(self, docs: list[Document]) -> None:
        for d in docs:
            split = assign_split(d.id, self.cfg.seed, self.cfg.val_fraction)
            if self.charset is not None and split == "train":
                self.charset.update(d.text)
            self.curated.write(json.dumps({"id": d.id, "split": split, "text": d.text}, ensure_ascii=False) + "\n")

    def curate_batch(self, batch: list[Record], pool: Workers) -> None:
        docs = self.read(batch)
        docs = self.normalize(docs, pool)
        representative: dict[str, str] = {}
        if self.cfg.exact_dedup.enabled:
            docs = self.exact_dedup(docs)
        if self.near is not None:
            docs = self.near_dedup(docs, pool, representative)
        self.flush_deferred(representative)
        if self.cfg.language.enabled:
            docs = self.language(docs, pool)
        if self.cfg.quality.enabled:
            docs = self.quality(docs, pool)
        self.keep(docs)


def _fingerprint(inputs: list[Path | str], cfg: CurationConfig) -> str:
    files = [[str(i)] if isinstance(i, str) else [str(i.resolve()), i.stat().st_size, i.stat().st_mtime_ns]
             for i in inputs]
    blob = json.dumps({"inputs": files, "config": asdict(cfg)}, sort_keys=True, default=str).encode()
    return hashlib.blake2b(blob, digest_size=16).hexdigest()


def curate(cfg: CurationConfig) -> CurationResult:
    """Run the whole pipeline described in the module docstring; returns where the results are."""
    t_start = time.perf_counter()
    inputs = resolve_inputs(cfg.input, cfg.read)
    out = Path(cfg.output).expanduser()
    busy = f"another prepare run (process <pid>) is writing {out}; wait for it to finish, or choose another output="
    with folder_lock(out, wait=False, busy=busy):
        _check_output(out, cfg.overwrite)  # under the lock, so a run that finished meanwhile counts too
        report, manifest_fields = _curate_into(out, inputs, cfg, t_start)
    if not report["balanced"]:  # a bug, not a user error: say so loudly
        raise RuntimeError(f"curation counts do not balance: {report['balance_problems']}")
    if report["documents_in"] == 0:
        raise DataError(f"the input holds no documents (no JSONL lines, rows or files with text): {cfg.input}; "
                        "check input=")
    if manifest_fields is None:
        if report["documents_out"] == 1:
            raise DataError("only one document survived curation; a train and a validation split need at least "
                            f"two (add data, or loosen the filters: see {out / 'report.md'})")
        reasons = {}
        for st in report["stages"]:
            reasons.update(st["removed"])
        top = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:4])
        raise DataError(f"no document survived curation ({report['documents_in']} read; removed: {top or 'none'}); "
                        f"see {out / 'report.md'}")
    log.info("kept %d of %d documents: %d train / %d val tokens in %s", report["documents_out"],
             report["documents_in"], manifest_fields["train_tokens"], manifest_fields["val_tokens"], out)
    return CurationResult(out, report, load_prepared(out, rebuild_hint=prepared_folder_hint(out)))


def _curate_into(out: Path, inputs: list[Path | str], cfg: CurationConfig,
                 t_start: float) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Both passes into a folder published at ``out`` (the caller holds its lock): the report, and the manifest's
    split fields (None when fewer than two documents survived: the folder then holds the report only)."""
    spec = _plain(cfg.tokenizer)
    fit = needs_fit(spec)
    tokenizer = None if fit else build_tokenizer(spec)
    if tokenizer is not None:
        tokenizer.encode("warm up")  # build cached encodings before workers fork, so they inherit them
    if cfg.language.enabled:
        language.scorer(cfg.language)  # fail fast on a bad model path or a missing package; forked workers inherit it
    n_workers = cfg.n_workers
    log.info("curating %d input(s) into %s with %d worker(s)", len(inputs), out, n_workers)

    manifest_fields: dict[str, Any] | None = None
    with building_folder(out) as folder, ExitStack() as stack:
        run = _Run(cfg, folder, stack)
        run.charset = set() if fit else None
        pool = stack.enter_context(Workers(n_workers))
        run.bars = _Bars(run.names, cfg.progress, total_bytes(inputs))
        stack.callback(run.bars.close)
        read_bar = run.bars.bars.get("read")
        records = iter_records(inputs, cfg.read, on_bytes=read_bar.update if read_bar is not None else None)
        for batch in _batches(_timed(records, run.stats["read"]), int(cfg.batch_mb * 1e6)):
            run.curate_batch(batch, pool)
        run.curated.close()
        if run.removed_file is not None:
            run.removed_file.close()

        if run.stats[run.names[-2]].docs_out:
            if tokenizer is None:
                fit_text = "".join(sorted((run.charset or set()) | set(DOC_SEPARATOR)))
                tokenizer = build_tokenizer(spec, train_text=fit_text)
            bars = run.bars
            manifest_fields = write_shards(folder / CURATED_FILE, folder, tokenizer, pool, cfg,
                                           run.stats["tokenize"], lambda n: bars.update("tokenize", n))
            if manifest_fields is not None:
                tokenizer.save(folder / TOKENIZER_FILE)
        if not cfg.keep_text:
            (folder / CURATED_FILE).unlink()

        tokenize = run.stats["tokenize"]
        tpb = (tokenize.tokens_out / tokenize.bytes_in) if tokenize.tokens_out and tokenize.bytes_in else None
        report = build_report(
            [run.stats[n] for n in run.names], tokens_per_byte=tpb,
            removed_lines=run.removed_lines if cfg.write_removed else None,
            context={
                "input": cfg.input,
                "output": str(out),
                "tokenizer": tokenizer.to_dict()["name"] if tokenizer is not None else str(spec),
                "workers": n_workers,
                "train_tokens": (manifest_fields or {}).get("train_tokens"),
                "val_tokens": (manifest_fields or {}).get("val_tokens"),
                "seconds": round(time.perf_counter() - t_start, 2),
                "config": asdict(cfg),
            })
        write_report(folder, report)
        if manifest_fields is not None:
            assert tokenizer is not None
            write_manifest(folder, {
                "corpus": f"curated({', '.join(cfg.input)})",
                "fingerprint": _fingerprint(inputs, cfg),
                "tokenizer_spec": spec,
                "vocab_size": tokenizer.vocab_size,
                "format_version": FORMAT_VERSION,
                **manifest_fields,
                "curation": {"report": "report.json", "removed": REMOVED_FILE if cfg.write_removed else None},
                "seconds": round(time.perf_counter() - t_start, 2),
            })
    return report, manifest_fields
