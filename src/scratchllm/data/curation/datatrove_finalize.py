"""The datatrove executor's last task: per-task books -> the prepared folder the embedded executor writes.

- the stage statistics of every task are added up (removal examples: the first tasks' first), and checked
  with the embedded ``report.check_balance``: records in = documents kept + removed.jsonl lines;
- ``removed.jsonl`` is the tasks' removal files, stage by stage, each in task order;
- the shards: each task wrote ``train_*.bin`` / ``val_*.bin`` of its part, in input order; they are linked into
  the output with global numbers (task 0's first), so the concatenated token stream of a split is the one the
  embedded executor writes for the same kept documents;
- ``tokenizer.json``, ``manifest.json`` (the same fields) and, with ``keep_text=true``, ``curated.jsonl``.

The folder is built beside the output and renamed into place (``data/folders.building_folder``) under the output's
lock; the work folder keeps the tasks' files until then, so a crash here loses nothing: finalize runs again.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from scratchllm.data.curation.config import CurationConfig, _plain
from scratchllm.data.curation.report import StageStats, build_report, write_report
from scratchllm.data.folders import TOKENIZER_FILE, building_folder, folder_lock, write_manifest
from scratchllm.data.shards import FORMAT_VERSION, write_shard
from scratchllm.errors import DataError

STAGES = ("read", "normalize", "exact_dedup", "near_dedup", "language", "quality", "tokenize")


def stage_names(cfg: CurationConfig) -> list[str]:
    on = {"exact_dedup": cfg.exact_dedup.enabled, "near_dedup": cfg.near_dedup.enabled,
          "language": cfg.language.enabled, "quality": cfg.quality.enabled}
    return [s for s in STAGES if on.get(s, True)]


def _merge(name: str, parts: list[dict[str, Any]], n_examples: int) -> StageStats:
    s = StageStats(name)
    for p in parts:
        s.docs_in += p["docs_in"]
        s.docs_out += p["docs_out"]
        s.bytes_in += p["bytes_in"]
        s.bytes_out += p["bytes_out"]
        s.seconds += p["seconds"]  # CPU-seconds over tasks (not wall clock)
        s.removed.update(Counter(p["removed"]))
        s.removed_bytes.update(Counter(p["removed_bytes"]))
        for reason, exs in p["examples"].items():
            shown = s.examples.setdefault(reason, [])
            shown.extend(exs[: max(0, n_examples - len(shown))])
        for key, value in p["notes"].items():
            if isinstance(value, dict):
                into = s.notes.setdefault(key, {})
                for k, v in value.items():
                    into[k] = into.get(k, 0) + v
            elif isinstance(value, (int, float)):
                s.notes[key] = s.notes.get(key, 0) + value
        if p.get("tokens_out") is not None:
            s.tokens_out = (s.tokens_out or 0) + p["tokens_out"]
    if "detected" in s.notes:
        s.notes["detected"] = dict(sorted(s.notes["detected"].items(), key=lambda kv: -kv[1]))
    return s


def _step_seconds(work: Path, job: str, step: str) -> float:
    """Seconds datatrove's own time tracking gave ``step`` (a name fragment) of ``job``, over its tasks' files."""
    total = 0.0
    for path in sorted((work / "logs" / job / "stats").glob("*.json")):
        for entry in json.loads(path.read_text(encoding="utf-8")):
            t = entry.get("time_stats")
            if step in entry.get("name", "") and isinstance(t, dict):
                total += float(t.get("total", 0.0))
    return total


def add_dedup_seconds(work: Path, stages: list[StageStats]) -> None:
    """The dedup stages' time is mostly in datatrove's own steps (signatures, find, buckets, cluster): add it.
    MinHash stage 1 consumes the stream, so its tracked time includes reading and normalising: those are taken
    off again."""
    by = {s.name: s for s in stages}
    upstream = sum(by[n].seconds for n in ("read", "normalize") if n in by)
    if "exact_dedup" in by:
        sig = _step_seconds(work, "read", "exact-deduplication stage 1")
        by["exact_dedup"].seconds += sig + _step_seconds(work, "exact_find", "exact-deduplication stage 2")
        upstream += sig
    if "near_dedup" in by:
        sig = max(0.0, _step_seconds(work, "read", "MinHash stage 1") - upstream)
        by["near_dedup"].seconds += (sig + _step_seconds(work, "buckets", "MinHash stage 2")
                                     + _step_seconds(work, "cluster", "MinHash stage 3"))


def _borrow(summaries: list[dict[str, Any]], tokenize: StageStats) -> tuple[str, int, str] | None:
    """As the embedded executor does for a tiny corpus: when one split got no document and the other at least
    two, the other's last document (in input order) moves over. Returns (donor split, its task, document id)."""
    docs = {s: sum(x[s]["documents"] for x in summaries) for s in ("train", "val")}
    for empty, donor in (("val", "train"), ("train", "val")):
        if docs[empty] == 0 and docs[donor] >= 2:
            rank = max(r for r, x in enumerate(summaries) if x[donor]["documents"])
            doc_id = summaries[rank][donor]["last"]["id"]
            tokenize.notes[f"moved to {empty}"] = doc_id
            return donor, rank, doc_id
    return None


def _rewrite_without_last(task: Path, summary: dict[str, Any], folder: Path, split: str,
                          files: dict[str, list[str]], cfg: CurationConfig, tokenizer: Any) -> None:
    """The donor task's shards of ``split`` without the tokens its last document added, renumbered."""
    from scratchllm.data import open_shard

    arrays = [np.asarray(open_shard(task / name)[1]) for name in summary["files"]]
    ids = np.concatenate(arrays)[: -summary["last"]["appended"]]
    for i in range(0, len(ids), int(cfg.shard_tokens)):
        name = f"{split}_{len(files[split]):06d}.bin"
        write_shard(folder / name, ids[i:i + int(cfg.shard_tokens)], tokenizer=tokenizer.name,
                    vocab_size=tokenizer.vocab_size)
        files[split].append(name)


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)  # cheap, and the work folder's copy stays until the output is in place
    except OSError:
        shutil.copy2(src, dst)


def finalize(work: Path, cfg: CurationConfig, context: dict[str, Any]) -> dict[str, Any]:
    tasks = int(context["tasks"])
    names = stage_names(cfg)
    ranks = range(tasks)
    parts = {n: [json.loads((work / "stats" / n / f"{r:05d}.json").read_text(encoding="utf-8")) for r in ranks]
             for n in names}
    stages = [_merge(n, parts[n], cfg.examples) for n in names]
    add_dedup_seconds(work, stages)
    out = Path(cfg.output).expanduser()
    spec = _plain(cfg.tokenizer)
    from scratchllm.tokenizers import build_tokenizer

    tokenizer = build_tokenizer(spec)
    busy = f"another prepare run (process <pid>) is writing {out}; wait for it to finish, or choose another output="
    with folder_lock(out, wait=False, busy=busy), building_folder(out) as folder:
        removed_lines = 0
        if cfg.write_removed:
            with open(folder / "removed.jsonl", "w", encoding="utf-8") as f:
                for n in names:
                    for r in ranks:
                        path = work / "removed" / n / f"{r:05d}.jsonl"
                        if path.is_file():
                            with open(path, encoding="utf-8") as src:
                                for line in src:
                                    f.write(line)
                                    removed_lines += 1
        files: dict[str, list[str]] = {"train": [], "val": []}
        tokens = {"train": 0, "val": 0}
        documents = {"train": 0, "val": 0}
        summaries = [json.loads((work / "tokens" / f"{r:05d}" / "summary.json").read_text(encoding="utf-8"))
                     for r in ranks]
        moved = _borrow(summaries, stages[-1])
        kept = open(folder / "curated.jsonl", "w", encoding="utf-8") if cfg.keep_text else None
        for r in ranks:
            task = work / "tokens" / f"{r:05d}"
            summary = summaries[r]
            for split in ("train", "val"):
                if moved is not None and moved[1] == r and moved[0] == split:  # the donor: its last document goes
                    names = _rewrite_without_last(task, summary[split], folder, split, files, cfg, tokenizer)
                else:
                    names = summary[split]["files"]
                    for name in names:
                        dst = f"{split}_{len(files[split]):06d}.bin"
                        _link(task / name, folder / dst)
                        files[split].append(dst)
                tokens[split] += summary[split]["tokens"]
                documents[split] += summary[split]["documents"]
            if kept is not None:
                with open(task / "kept.jsonl", encoding="utf-8") as src:
                    for line in src:
                        if moved is not None and moved[1] == r and json.loads(line)["id"] == moved[2]:
                            rec = json.loads(line)
                            line = json.dumps({**rec, "split": "val" if moved[0] == "train" else "train"},
                                              ensure_ascii=False) + "\n"
                        kept.write(line)
        if moved is not None:  # the receiving split: one shard holding the moved document
            donor, rank, _ = moved
            to = "val" if donor == "train" else "train"
            ids = np.load(work / "tokens" / f"{rank:05d}" / f"last_{donor}.npy")
            if tokenizer.eot_id is not None:
                ids = np.concatenate([ids, np.array([tokenizer.eot_id], dtype=ids.dtype)])
            name = f"{to}_{len(files[to]):06d}.bin"
            write_shard(folder / name, ids, tokenizer=tokenizer.name, vocab_size=tokenizer.vocab_size)
            files[to].append(name)
            appended = summaries[rank][donor]["last"]["appended"]
            tokens[donor] -= appended
            tokens[to] += len(ids)
            documents[donor] -= 1
            documents[to] += 1
            stages[-1].tokens_out = tokens["train"] + tokens["val"]
        if kept is not None:
            kept.close()
        tok = stages[-1]
        tpb = (tok.tokens_out / tok.bytes_in) if tok.tokens_out and tok.bytes_in else None
        seconds = round(time.time() - float(context["started"]), 2)
        report = build_report(stages, tokens_per_byte=tpb, removed_lines=removed_lines if cfg.write_removed else None,
                              context={"input": cfg.input, "output": str(out), "tokenizer": tokenizer.to_dict()["name"],
                                       "workers": f"datatrove {context['kind']}: {tasks} tasks",
                                       "executor": context["executor"], "train_tokens": tokens["train"],
                                       "val_tokens": tokens["val"], "seconds": seconds, "config": context["config"]})
        write_report(folder, report)
        empty = [s for s in ("train", "val") if documents[s] == 0]
        if not empty:
            tokenizer.save(folder / TOKENIZER_FILE)
            write_manifest(folder, {
                "corpus": f"curated({', '.join(cfg.input)})",
                "fingerprint": context["fingerprint"],
                "tokenizer_spec": spec,
                "vocab_size": tokenizer.vocab_size,
                "format_version": FORMAT_VERSION,
                "train": files["train"], "val": files["val"],
                "train_tokens": tokens["train"], "val_tokens": tokens["val"],
                "documents": documents,
                "curation": {"report": "report.json", "removed": "removed.jsonl" if cfg.write_removed else None,
                             "executor": "datatrove"},
                "seconds": seconds,
            })
    if not report["balanced"]:
        raise RuntimeError(f"curation counts do not balance: {report['balance_problems']}")
    if empty:
        raise DataError(f"the {' and '.join(empty)} split got no document ({report['documents_out']} kept); "
                        f"raise val_fraction, or use the embedded executor for a corpus this small (see "
                        f"{out / 'report.md'})")
    return report
