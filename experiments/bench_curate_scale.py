"""Curating at scale: the embedded executor against datatrove's (``executor=datatrove``) on the same corpus.

Questions it answers, on the corpus ``bench_prepare.py`` builds (Shakespeare collages with planted copies,
other languages and junk; ~50 MB, and 4x that):

1. Agreement: do both executors keep the same documents (the acceptance bar is >= 99%)? Every difference is
   listed with the stage and reason the other executor removed it for. Do both balance, and do their shards
   load? (Same profile, ``books``, and tokenizer, ``gpt2``, for both.)
2. Memory of near-duplicate detection at 1x and 4x the corpus: the embedded stage's MinHash LSH index lives in
   memory (datasketch), so its peak grows with the documents; datatrove's stages are disk-backed and sharded
   (tasks grow with the corpus: ``--mb-per-task``), so the peak of each of its jobs should stay flat. Each
   measurement is its own subprocess (the RSS before the stage started, and the peak RSS during it: VmHWM, reset
   when the stage starts):
   embedded = read + normalise + exact + near dedup of the whole corpus in one process; datatrove = its
   ``read`` job (reader, normaliser, exact and MinHash signatures), ``buckets`` and ``cluster`` jobs, tasks run
   one at a time (``workers=1``: the peak of one task, what each machine of a cluster would hold).
3. Throughput, MB of input per second of wall clock, of both whole runs side by side. On a busy machine that is
   noise: the script prints it, and the results file says so.

    .venv/bin/python experiments/bench_curate_scale.py            # 50 MB and 200 MB (minutes)
    .venv/bin/python experiments/bench_curate_scale.py --quick    # 3 MB and 12 MB smoke run (*_quick results)

Results: ``experiments/results/curate_scale_<date>[_quick].md``. Corpora and outputs go under ``--cache-dir``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.machine import cpu_model  # experiments/ is on the path: this file runs as a script
from bench_prepare import corpus

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PROFILE = ["prepare=books", "tokenizer=gpt2", "progress=false", "keep_text=true", "overwrite=true"]


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> None:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0), so the peak read afterwards is the
    stage's, not that of the imports before it."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _config(*overrides: str):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from scratchllm.data.curation import CurationConfig
    from scratchllm.paths import config_dir

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("prepare", overrides=list(overrides))
    GlobalHydra.instance().clear()
    return CurationConfig.from_mapping(cfg)


# ---------------------------------------------------------------------------------------------- 1: agreement
def whole_runs(path: Path, out: Path, workers: int, tasks: int) -> dict[str, Any]:
    from scratchllm.data import open_shard
    from scratchllm.data.curation import curate
    from scratchllm.data.curation.datatrove_config import DatatroveConfig
    from scratchllm.data.curation.datatrove_executor import curate_datatrove

    mb = path.stat().st_size / 1e6
    runs: dict[str, Any] = {}
    for name in ("embedded", "datatrove"):
        cfg = _config(f"input={path}", f"output={out / name}", f"workers={workers}", *PROFILE)
        t0 = time.perf_counter()
        if name == "embedded":
            res = curate(cfg)
        else:
            res = curate_datatrove(cfg, DatatroveConfig.from_mapping({"tasks": tasks, "workers": workers}))
        wall = time.perf_counter() - t0
        kept = [json.loads(line)["id"] for line in open(res.output / "curated.jsonl", encoding="utf-8")]
        removed = {}
        with open(res.output / "removed.jsonl", encoding="utf-8") as f:
            for line in f:
                r = json.loads(line)
                removed[r["id"]] = f"{r['stage']}/{r['reason']}"
        shards_ok = all(len(open_shard(p)[1]) > 0 for p in res.prepared.train + res.prepared.val)
        runs[name] = {"report": res.report, "wall_s": wall, "mb_per_s": mb / wall, "kept": kept,
                      "removed": removed, "shards_ok": shards_ok}
        print(f"{name}: kept {len(kept):,} of {res.report['documents_in']:,} in {wall:.1f} s "
              f"({mb / wall:.2f} MB/s; {LOAD_NOTE})", flush=True)
    a, b = set(runs["embedded"]["kept"]), set(runs["datatrove"]["kept"])
    runs["agreement"] = len(a & b) / max(1, len(a | b))
    runs["only_embedded"] = sorted(a - b)
    runs["only_datatrove"] = sorted(b - a)
    return runs


# ---------------------------------------------------------------------------------------------- 2: memory
def embedded_near_memory(path: Path) -> dict[str, float]:
    """The embedded stages up to near dedup, streaming (one document at a time), in this process."""
    from scratchllm.data.curation import dedup, normalize
    from scratchllm.data.curation.documents import Document
    from scratchllm.data.curation.readers import iter_records

    cfg = _config(f"input={path}", "output=unused", *PROFILE)
    exact, near = dedup.ExactDeduplicator(), dedup.NearDeduplicator(cfg.near_dedup)
    dedup.signature("warm up the permutations", cfg.near_dedup)
    _reset_peak()
    before = _rss_mb()
    docs = kept = 0
    for r in iter_records([path], cfg.read):
        if not isinstance(r, Document):
            continue
        text = normalize.normalize_text(r.text, cfg.normalize)
        if not text or exact.check(r.id, text) is not None:
            continue
        docs += 1
        kept += near.check(r.id, dedup.signature(text, cfg.near_dedup)) is None
    return {"rss_before_mb": before, "peak_mb": _peak_mb(), "documents": docs, "kept": kept}


def datatrove_job_memory(path: Path, work: Path, tasks: int, job: str) -> dict[str, float]:
    """One datatrove job of a near-dedup-only run (language and quality off), its tasks one at a time."""
    from scratchllm.data.curation.datatrove_config import DatatroveConfig
    from scratchllm.data.curation.datatrove_executor import (_claim_work, _executor, _fingerprint, build_jobs)

    cfg = _config(f"input={path}", f"output={work.parent / 'unused'}", "language.enabled=false",
                  "quality.enabled=false", *PROFILE)
    dtc = DatatroveConfig.from_mapping({"tasks": tasks, "workers": 1, "work_dir": str(work)})
    fp = _fingerprint([path], cfg, dtc)
    started = _claim_work(work, fp)
    context = {"tasks": tasks, "kind": "local", "started": started, "fingerprint": fp, "executor": {}, "config": {}}
    jobs = {name: (pipe, n) for name, pipe, n in build_jobs(cfg, dtc, [path], work, context)}
    pipe, n = jobs[job]
    _reset_peak()
    before = _rss_mb()
    t0 = time.perf_counter()
    _executor(job, pipe, n, dtc, work, None).run()
    return {"rss_before_mb": before, "peak_mb": _peak_mb(), "tasks": n, "seconds": time.perf_counter() - t0}


def _child(*args: str) -> dict[str, float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parent)}
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(f"{args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def memory_runs(path: Path, work: Path, tasks: int) -> dict[str, Any]:
    shutil.rmtree(work, ignore_errors=True)
    out: dict[str, Any] = {"embedded near_dedup": _child("--child-embedded", str(path))}
    for job in ("read", "buckets", "cluster"):
        out[f"datatrove {job}"] = _child("--child-datatrove", str(path), str(work), str(tasks), job)
    shutil.rmtree(work, ignore_errors=True)
    return out


# ---------------------------------------------------------------------------------------------- results
# Timings mean something only on an otherwise idle machine: say which it was, from the load average at start.
_LOAD = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
LOAD_NOTE = (f"load average {_LOAD:.2f} at start: "
             + ("**busy machine**, memory and agreement are valid, timings are not" if _LOAD > 1.0
                else "an otherwise idle machine"))


def write_results(args, paths: dict[int, Path], runs: dict[str, Any], mem: dict[int, dict[str, Any]]) -> Path:
    import importlib.metadata as md

    date = dt.date.today().isoformat()
    name = f"curate_scale_{date}{'_quick' if args.quick else ''}.md"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    emb, dtr = runs["embedded"], runs["datatrove"]
    lines = [f"# Curating at scale: embedded vs datatrove executor ({date})", "",
             f"- command: `python experiments/bench_curate_scale.py {' '.join(sys.argv[1:])}`",
             f"- machine: {cpu_model()}, {cores} cores usable, {platform.platform()}, "
             f"Python {platform.python_version()} — {LOAD_NOTE}",
             f"- versions: datatrove {md.version('datatrove')}, datasketch {md.version('datasketch')}",
             f"- corpus 1x: {paths[1].name}, {paths[1].stat().st_size / 1e6:.1f} MB; profile books, tokenizer gpt2; "
             f"workers {args.workers}; datatrove tasks {args.tasks} (1x)", "",
             "## Agreement on the 1x corpus", "",
             "| | embedded | datatrove |", "|---|---:|---:|",
             f"| documents in | {emb['report']['documents_in']:,} | {dtr['report']['documents_in']:,} |",
             f"| kept | {len(emb['kept']):,} | {len(dtr['kept']):,} |",
             f"| report balanced | {emb['report']['balanced']} | {dtr['report']['balanced']} |",
             f"| shards load | {emb['shards_ok']} | {dtr['shards_ok']} |",
             f"| tokens | {emb['report']['tokens_out']:,} | {dtr['report']['tokens_out']:,} |",
             f"| wall s | {emb['wall_s']:.1f} | {dtr['wall_s']:.1f} |",
             f"| MB/s | {emb['mb_per_s']:.2f} | {dtr['mb_per_s']:.2f} |", "",
             f"Kept-set agreement (Jaccard of the kept ids): **{runs['agreement']:.4%}**; "
             f"{len(runs['only_embedded'])} kept only by embedded, {len(runs['only_datatrove'])} only by datatrove.",
             ""]
    for label, ids, other in (("kept only by embedded", runs["only_embedded"], dtr),
                              ("kept only by datatrove", runs["only_datatrove"], emb)):
        if ids:
            lines.append(f"- {label} (why the other removed it): " + ", ".join(
                f"`{i}` ({other['removed'].get(i, '?')})" for i in ids[:40]) + (" …" if len(ids) > 40 else ""))
    lines += ["", "Removed per stage / reason:", "", "| stage | embedded | datatrove |", "|---|---|---|"]
    for se, sd in zip(emb["report"]["stages"], dtr["report"]["stages"]):
        lines.append(f"| {se['stage']} | {se['removed']} | {sd['removed']} |")
    lines += ["", "## Near-dedup memory, 1x vs 4x corpus (peak RSS of the process, MB)", "",
              "Each row is its own process; *before* is its RSS when the stage started (imports, model), *peak* its "
              "maximum. datatrove tasks scale with the corpus and run one at a time (the peak of one task).", "",
              "| measurement | scale | corpus MB | tasks | RSS before | peak | peak − before |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for scale, rows in mem.items():
        for key, m in rows.items():
            lines.append(f"| {key} | {scale}x | {paths[scale].stat().st_size / 1e6:.0f} | {m.get('tasks', '–')} | "
                         f"{m['rss_before_mb']:.0f} | {m['peak_mb']:.0f} | {m['peak_mb'] - m['rss_before_mb']:.0f} |")
    if len(mem) >= 2:
        s0, s1 = sorted(mem)[:2]
        lines += ["", f"Growth of the stage's own memory (peak − before) from {s0}x to {s1}x:", ""]
        for key in mem[s0]:
            a = mem[s0][key]["peak_mb"] - mem[s0][key]["rss_before_mb"]
            b = mem[s1][key]["peak_mb"] - mem[s1][key]["rss_before_mb"]
            pa, pb = mem[s0][key]["peak_mb"], mem[s1][key]["peak_mb"]
            lines.append(f"- {key}: {a:.0f} → {b:.0f} MB ({b / a if a > 0 else float('nan'):.2f}x); "
                         f"whole-process peak {pa:.0f} → {pb:.0f} MB ({pb / pa - 1:+.0%})")
    path = RESULTS_DIR / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child-embedded":
        print(json.dumps(embedded_near_memory(Path(sys.argv[2]))))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--child-datatrove":
        _, _, path, work, tasks, job = sys.argv
        print(json.dumps(datatrove_job_memory(Path(path), Path(work), int(tasks), job)))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="3 MB (and 4x) smoke run, results marked _quick")
    p.add_argument("--mb", type=float, default=None, help="1x corpus size in MB (default 50; 3 with --quick)")
    p.add_argument("--scales", default="1,4", help="corpus multiples for the memory part")
    p.add_argument("--workers", type=int, default=2, help="processes for the whole runs")
    p.add_argument("--tasks", type=int, default=None, help="datatrove tasks at 1x (default: 1 per --mb-per-task)")
    p.add_argument("--mb-per-task", type=float, default=12.5)
    p.add_argument("--skip-agreement", action="store_true")
    p.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "scratchllm_bench")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    args.mb = args.mb or (3.0 if args.quick else 50.0)
    args.tasks = args.tasks or max(2, round(args.mb / args.mb_per_task))
    scales = [int(s) for s in args.scales.split(",")]
    paths = {s: corpus(args.cache_dir, args.mb * s, args.seed)[0] for s in sorted({1, *scales})}
    runs = {}
    if not args.skip_agreement:
        runs = whole_runs(paths[1], args.cache_dir / f"curate_scale_{args.mb:g}mb", args.workers, args.tasks)
    mem = {}
    for s in scales:
        print(f"memory at {s}x ...", flush=True)
        mem[s] = memory_runs(paths[s], args.cache_dir / f"curate_scale_work_{s}x", args.tasks * s)
        print(json.dumps(mem[s], indent=1), flush=True)
    if runs:
        print(write_results(args, paths, runs, mem).read_text())
    else:
        print(json.dumps(mem, indent=1))


if __name__ == "__main__":
    main()
