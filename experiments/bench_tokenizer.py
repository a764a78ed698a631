"""Tokenizer benchmark: BPE training time, compression, and encoding throughput.

Questions it answers, on a >= 50 MB corpus built from Shakespeare's train plays:

1. How long does training a byte-level BPE take with ``rustbpe`` (our ``train_bpe``) against Hugging Face
   ``tokenizers``' ``BpeTrainer``, at vocabularies 4096 and 32768? (rustbpe is also run with GPT-2's split
   pattern, HF's ByteLevel regex, so the implementation and the pattern can be told apart.)
2. How well does each compress the held-out (validation) plays, in UTF-8 bytes per token? gpt2 (and cl100k
   where its file is installed) are listed for reference.
3. How fast is encoding, in MB of UTF-8 per second: tiktoken ``encode_ordinary`` on one thread,
   ``encode_ordinary_batch`` on a thread pool, and HF ``encode_batch`` (Rust threads)?

The corpus: every speech of the train plays, shuffled anew in each round, with light noise in ~30% of speeches
(about 5% of their words replaced by random corpus words, occasionally two lines swapped) so it is not one text
repeated. It is written once (about 8 MB per file) under ``--cache-dir`` (default: the system temp folder), never
into the repository, and reused while its parameters are unchanged.

    .venv/bin/python experiments/bench_tokenizer.py            # the full run (~50 MB; minutes)
    .venv/bin/python experiments/bench_tokenizer.py --quick    # smoke test (~3 MB; seconds), *_quick results

Results go to ``experiments/results/tokenizer_<date>[_quick].{md,csv}`` with the machine, versions and command.
Both Rust trainers and HF encoding use every core unless ``--threads`` says otherwise (set before import).
Timings taken while other work shares the machine are noise.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import json
import os
import platform
import random
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from bench.machine import cpu_model  # experiments/ is on the path: this file runs as a script

RESULTS_DIR = Path(__file__).resolve().parent / "results"
FILE_MB = 8  # size of each corpus file


# ---------------------------------------------------------------------------------------------- corpus
def _noisy(speech: str, rng: random.Random, words: list[str]) -> str:
    lines = speech.split("\n")
    if len(lines) > 2 and rng.random() < 0.2:  # swap two verse lines (never the "NAME:" line)
        i = rng.randrange(1, len(lines) - 1)
        lines[i], lines[i + 1] = lines[i + 1], lines[i]
    out = []
    for line in lines:
        toks = line.split(" ")
        for j in range(len(toks)):
            if rng.random() < 0.05:
                toks[j] = rng.choice(words)
        out.append(" ".join(toks))
    return "\n".join(out)


def build_corpus(train_docs: list[str], target_mb: float, folder: Path, seed: int = 0) -> list[Path]:
    """Write the benchmark corpus (see the module docstring) into ``folder``; reuse it if already there."""
    spec = {"target_mb": target_mb, "seed": seed, "version": 1,
            "source": hashlib.sha256("\n".join(train_docs).encode()).hexdigest()[:16]}
    manifest = folder / "manifest.json"
    if manifest.is_file() and json.loads(manifest.read_text()).get("spec") == spec:
        return [folder / name for name in json.loads(manifest.read_text())["files"]]
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("corpus_*.txt"):
        old.unlink()
    speeches = [s for doc in train_docs for s in doc.split("\n\n") if s.strip()]
    words = sorted({w for s in speeches[:5000] for w in re.findall(r"[A-Za-z']+", s)})
    rng = random.Random(seed)
    target = int(target_mb * 1e6)
    files: list[str] = []
    written, buf, buf_bytes = 0, [], 0

    def flush() -> None:
        nonlocal buf, buf_bytes
        name = f"corpus_{len(files):03d}.txt"
        (folder / name).write_text("\n\n".join(buf) + "\n", encoding="utf-8")
        files.append(name)
        buf, buf_bytes = [], 0

    while written < target:
        order = speeches[:]
        rng.shuffle(order)
        for s in order:
            s = _noisy(s, rng, words) if rng.random() < 0.3 else s
            n = len(s.encode("utf-8")) + 2
            buf.append(s)
            buf_bytes += n
            written += n
            if buf_bytes >= FILE_MB * 1e6:
                flush()
            if written >= target:
                break
    if buf:
        flush()
    manifest.write_text(json.dumps({"spec": spec, "files": files, "bytes": written}, indent=2))
    return [folder / f for f in files]


# ---------------------------------------------------------------------------------------------- trainers
def train_rustbpe(chunks: list[str], vocab_size: int, pattern: str | None = None) -> Any:
    from scratchllm.tokenizers import GPT4_PATTERN, BPETrainConfig, train_bpe

    return train_bpe(chunks, BPETrainConfig(vocab_size=vocab_size, pattern=pattern or GPT4_PATTERN))


def train_hf(chunks: list[str], vocab_size: int) -> Any:
    import tokenizers as hf

    tok = hf.Tokenizer(hf.models.BPE())
    tok.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = hf.decoders.ByteLevel()
    trainer = hf.trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"], show_progress=False,
                                     initial_alphabet=hf.pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(chunks, trainer)
    return tok


def count_ours(tok: Any, docs: list[str]) -> int:
    return sum(map(len, tok.encode_batch(docs)))


def count_hf(tok: Any, docs: list[str]) -> int:
    return sum(len(e.ids) for e in tok.encode_batch(docs))


def best_of(fn: Callable[[], Any], repeats: int, budget_s: float = 60.0) -> float:
    """Best time of ``repeats`` runs (fewer once ``budget_s`` is spent: a slow method is timed once)."""
    best, spent = float("inf"), 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        took = time.perf_counter() - t0
        best, spent = min(best, took), spent + took
        if spent > budget_s:
            break
    return best


def chunk_text(text: str, size: int) -> list[str]:
    """~``size``-character pieces cut after a newline followed by a non-space (a piece boundary for both split
    patterns), so per-chunk token counts add up to the whole text's."""
    out, start = [], 0
    cut = re.compile(r"\n(?=\S)")
    while len(text) - start > size:
        m = cut.search(text, start + size)
        if m is None:
            break
        out.append(text[start:m.end()])
        start = m.end()
    out.append(text[start:])
    return out


# ---------------------------------------------------------------------------------------------- report
def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("rustbpe", "tiktoken", "tokenizers", "scratchllm"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "absent"
    return out


def machine() -> str:
    return f"{platform.system()} {platform.release()}, {cpu_model()}, {os.cpu_count()} logical CPUs"


def git_commit() -> str:
    head = Path(__file__).resolve().parents[1] / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            return (head.parent / ref[5:]).read_text().strip()[:7]
        return ref[:7]
    except OSError:
        return "unknown"


def write_results(rows: list[dict[str, Any]], info: dict[str, Any], stem: str, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.md"
    fields = ["section", "name", "vocab_size", "seconds", "bytes_per_token", "mb_per_s", "threads", "note"]
    with csv_path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in fields})

    def table(section: str, cols: list[tuple[str, str]]) -> list[str]:
        sel = [r for r in rows if r["section"] == section]
        lines = ["| " + " | ".join(h for h, _ in cols) + " |", "|" + "|".join("---" if i == 0 else "---:"
                                                                          for i in range(len(cols))) + "|"]
        for r in sel:
            lines.append("| " + " | ".join(str(r.get(k, "")) for _, k in cols) + " |")
        return lines

    md = [f"# Tokenizer benchmark{' (quick smoke run: timings are not meaningful)' if info['quick'] else ''}", "",
          f"Command: `{info['command']}`", "",
          f"- date: {info['date']}; scratchllm commit {info['commit']}",
          f"- machine: {info['machine']}; threads used: {info['threads']}",
          "- versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()),
          f"- training corpus: {info['corpus_mb']:.1f} MB in {info['corpus_files']} files under {info['corpus_dir']} "
          "(train plays' speeches, reshuffled each round, light word noise)",
          f"- held-out text: the {info['val_docs']} validation plays, {info['val_mb']:.2f} MB",
          f"- throughput text: {info['enc_mb']:.1f} MB of the corpus, cut into texts of about the sizes in the "
          f"notes (HF's speed depends on text length); best of {info['repeats']} (one run past a minute)",
          "", "## Training time and held-out compression", ""]
    md += table("train", [("trainer", "name"), ("vocab", "vocab_size"), ("seconds", "seconds"),
                          ("held-out bytes/token", "bytes_per_token"), ("note", "note")])
    md += ["", "## Reference tokenizers on the held-out plays", ""]
    md += table("reference", [("tokenizer", "name"), ("vocab", "vocab_size"), ("bytes/token", "bytes_per_token")])
    md += ["", "## Encoding throughput", ""]
    md += table("encode", [("method", "name"), ("vocab", "vocab_size"), ("threads", "threads"),
                           ("seconds", "seconds"), ("MB/s", "mb_per_s"), ("note", "note")])
    md += ["", "Bytes/token: UTF-8 bytes of the held-out plays divided by their token count (higher = better "
           "compression). rustbpe uses GPT-4's split pattern unless marked gpt2-pattern; HF's ByteLevel "
           "pre-tokenizer is GPT-2's pattern.", ""]
    md_path.write_text("\n".join(md))
    return md_path, csv_path


# ---------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: ~3 MB corpus, vocab 512/2048, 1 repeat")
    ap.add_argument("--corpus-mb", type=float, default=None, help="corpus size (default 50, quick 3)")
    ap.add_argument("--vocab", type=int, nargs="+", default=None, help="vocab sizes (default 4096 32768)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for Rust pools and tiktoken")
    ap.add_argument("--repeats", type=int, default=None, help="encoding timings: best of N (default 3, quick 1)")
    ap.add_argument("--doc-chars", type=int, nargs="+", default=[1024, 65536],
                    help="throughput: cut the text into documents of about these sizes (characters)")
    ap.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "scratchllm-bench-tokenizer")
    ap.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    args = ap.parse_args(argv)
    corpus_mb = args.corpus_mb or (3.0 if args.quick else 50.0)
    vocabs = args.vocab or ([512, 2048] if args.quick else [4096, 32768])
    repeats = args.repeats or (1 if args.quick else 3)
    # Rust thread pools read these once, at first use: set them before importing rustbpe / tokenizers
    os.environ["RAYON_NUM_THREADS"] = str(args.threads)
    os.environ["RAYON_RS_NUM_CPUS"] = str(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

    from scratchllm.data.corpora import ShakespearePlays
    from scratchllm.tokenizers import GPT2Tokenizer, build_tokenizer, find_cl100k_file
    from scratchllm.tokenizers.gpt2 import GPT2_PATTERN
    from scratchllm.tokenizers.text_input import iter_texts

    t0 = time.perf_counter()
    splits = ShakespearePlays().splits()
    val = splits["val"]
    val_bytes = sum(len(d.encode("utf-8")) for d in val)
    files = build_corpus(splits["train"], corpus_mb, args.cache_dir / f"corpus-{corpus_mb:g}mb")
    chunks = list(iter_texts([str(f) for f in files]))
    corpus_bytes = sum(f.stat().st_size for f in files)
    print(f"corpus: {corpus_bytes / 1e6:.1f} MB in {len(files)} files ({time.perf_counter() - t0:.1f} s to "
          f"prepare), held-out {val_bytes / 1e6:.2f} MB", flush=True)

    rows: list[dict[str, Any]] = []
    trained: dict[tuple[str, int], Any] = {}
    for vocab in vocabs:
        for name, fn, counter in [
            ("rustbpe (scratchllm train_bpe)", lambda v: train_rustbpe(chunks, v), count_ours),
            ("rustbpe, gpt2-pattern", lambda v: train_rustbpe(chunks, v, GPT2_PATTERN), count_ours),
            ("HF tokenizers BpeTrainer", lambda v: train_hf(chunks, v), count_hf),
        ]:
            t = time.perf_counter()
            tok = fn(vocab)
            secs = time.perf_counter() - t
            bpt = val_bytes / counter(tok, val)
            trained[(name, vocab)] = tok
            rows.append({"section": "train", "name": name, "vocab_size": vocab, "seconds": f"{secs:.2f}",
                         "bytes_per_token": f"{bpt:.4f}", "threads": args.threads})
            print(f"train {name:32s} vocab {vocab:>6}: {secs:7.2f} s, held-out {bpt:.4f} bytes/token", flush=True)

    refs = [("gpt2", GPT2Tokenizer())]
    if find_cl100k_file() is not None:
        refs.append(("cl100k", build_tokenizer("cl100k")))
    for name, tok in refs:
        bpt = val_bytes / count_ours(tok, val)
        rows.append({"section": "reference", "name": name, "vocab_size": tok.vocab_size,
                     "bytes_per_token": f"{bpt:.4f}"})
        print(f"reference {name}: {bpt:.4f} bytes/token", flush=True)

    # encoding throughput on 10 MB of the corpus (quick: 1 MB), largest vocabulary, at each document size
    vocab = max(vocabs)
    enc_text = "".join(chunks)[: int(min(1.0 if args.quick else 10.0, corpus_mb) * 1e6)]
    enc_mb = len(enc_text.encode("utf-8")) / 1e6
    ours = trained[("rustbpe (scratchllm train_bpe)", vocab)].encoding()
    hf_tok = trained[("HF tokenizers BpeTrainer", vocab)]
    gpt2 = GPT2Tokenizer().encoding()
    for size in args.doc_chars:
        docs = chunk_text(enc_text, size)
        cases = [
            ("tiktoken encode_ordinary (trained bpe)", 1, vocab, lambda: [ours.encode_ordinary(c) for c in docs]),
            ("tiktoken encode_ordinary_batch (trained bpe)", args.threads, vocab,
             lambda: ours.encode_ordinary_batch(docs, num_threads=args.threads)),
            ("HF tokenizers encode_batch (trained HF bpe)", args.threads, vocab, lambda: hf_tok.encode_batch(docs)),
            ("tiktoken encode_ordinary (gpt2)", 1, 50257, lambda: [gpt2.encode_ordinary(c) for c in docs]),
            ("tiktoken encode_ordinary_batch (gpt2)", args.threads, 50257,
             lambda: gpt2.encode_ordinary_batch(docs, num_threads=args.threads)),
        ]
        for name, threads, v, fn in cases:
            secs = best_of(fn, repeats)
            note = f"{len(docs)} texts of ~{size:,} chars"
            rows.append({"section": "encode", "name": name, "vocab_size": v, "seconds": f"{secs:.3f}",
                         "mb_per_s": f"{enc_mb / secs:.2f}", "threads": threads, "note": note})
            print(f"encode {name:46s} ({note}): {enc_mb / secs:8.2f} MB/s", flush=True)

    now = dt.datetime.now()
    info = {
        "quick": args.quick,
        "command": " ".join([".venv/bin/python", "experiments/bench_tokenizer.py", *(argv if argv is not None
                                                                                     else sys.argv[1:])]),
        "date": now.strftime("%Y-%m-%d %H:%M"),
        "commit": git_commit(),
        "machine": machine(),
        "threads": args.threads,
        "versions": versions(),
        "corpus_mb": corpus_bytes / 1e6,
        "corpus_files": len(files),
        "corpus_dir": args.cache_dir,
        "val_docs": len(val),
        "val_mb": val_bytes / 1e6,
        "enc_mb": enc_mb,
        "repeats": repeats,
    }
    stem = f"tokenizer_{now.strftime('%Y-%m-%d')}" + ("_quick" if args.quick else "")
    md_path, csv_path = write_results(rows, info, stem, args.out_dir)
    print(f"wrote {md_path} and {csv_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
