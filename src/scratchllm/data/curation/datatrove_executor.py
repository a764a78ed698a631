"""``executor=datatrove``: the curation stages as datatrove jobs (Local, Slurm or Ray), for corpora past one machine.

Six jobs, each a datatrove executor with its own logging folder under ``<work>/logs/`` (and so its own
completion markers: a restarted run skips every task that finished, and ends with the same output):

====  ===========  =====  ==========================================================================
 #    job          tasks  steps
====  ===========  =====  ==========================================================================
 1    read         N      our reader -> our normaliser (saves the text) -> exact + MinHash signatures
 2    exact_find   1      datatrove ExactFindDedups (a heap merge of the sorted signature files)
 3    buckets      B      datatrove MinhashDedupBuckets, one task per bucket
 4    cluster      1      candidates verified (threshold), union-find, first document of a cluster kept
 5    filter       N      exact filter -> MinHash filter -> our language -> our quality -> token shards
 6    finalize     1      report.md / report.json / removed.jsonl / manifest.json, shards numbered
====  ===========  =====  ==========================================================================

Memory per task does not grow with the corpus when ``tasks`` grows with it: a read or filter task holds its own
piece's signatures, a bucket task a heap entry per signature file, and only the cluster task holds state across
the corpus: the union-find of the verified near duplicates, which grows with the number of *duplicates*, not of
documents (it reads the full signatures it verifies with row by row from disk). datatrove's issues #106 and #222
are about this single task.

On Slurm each job becomes an sbatch array depending on the one before (``afterok``); ``executor.dry_run=true``
writes the scripts and a ``submit.sh`` that chains them, and submits nothing. The work folder must then be on
storage the nodes share.
"""

from __future__ import annotations

import ctypes
import functools
import json
import logging
import shutil
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from scratchllm.data.curation.config import CurationConfig, _plain
from scratchllm.data.curation.datatrove_config import DatatroveConfig, minhash_shape, plan_pieces
from scratchllm.errors import ConfigError

log = logging.getLogger(__name__)
RUN_FILE = "run.json"


def work_dir(cfg: CurationConfig, dt: DatatroveConfig) -> Path:
    out = Path(cfg.output).expanduser()
    return Path(dt.work_dir).expanduser() if dt.work_dir else out.parent / f"{out.name}.datatrove-work"


def _check(cfg: CurationConfig, dt: DatatroveConfig) -> None:
    from scratchllm.data.tokenize import needs_fit

    try:
        import datatrove  # noqa: F401
    except ModuleNotFoundError:
        raise ConfigError("executor=datatrove needs datatrove: pip install datatrove (or executor=embedded)") from None
    if needs_fit(_plain(cfg.tokenizer)):
        raise ConfigError(f"executor=datatrove needs a tokenizer with a fixed vocabulary (gpt2, a trained BPE "
                          f"folder); {cfg.tokenizer!r} learns its vocabulary from the curated text: use the "
                          "embedded executor (executor=embedded) for it")
    if any(i.startswith("hf:") for i in cfg.input):
        raise ConfigError("executor=datatrove reads files, folders and globs; download hf: datasets to files first "
                          "or use executor=embedded")
    if cfg.read.max_documents is not None:
        raise ConfigError("read.max_documents is not supported with executor=datatrove (tasks read pieces of the "
                          "input independently); use executor=embedded for a quick look")
    if dt.kind == "ray":
        try:
            import ray  # noqa: F401
        except ModuleNotFoundError:
            raise ConfigError("executor.kind=ray needs Ray: pip install 'ray' (or executor.kind=local)") from None


def _fingerprint(inputs: list[Path], cfg: CurationConfig, dt: DatatroveConfig) -> str:
    import hashlib

    files = [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in inputs]
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("progress", "overwrite", "workers")}
    blob = json.dumps({"inputs": files, "config": settings, "tasks": dt.tasks,
                       "minhash": [dt.buckets, dt.hashes_per_bucket]}, sort_keys=True, default=str)
    return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()


def _claim_work(work: Path, fingerprint: str) -> float:
    """The work folder for this run: a new one, or the unfinished run with the same settings (resumed). Returns
    when the run first started."""
    run = work / RUN_FILE
    if run.is_file():
        old = json.loads(run.read_text(encoding="utf-8"))
        if old.get("fingerprint") != fingerprint:
            raise ConfigError(f"{work} holds an unfinished datatrove run with other inputs or settings; delete it "
                              f"(rm -r {work}) or set executor.work_dir=<another folder>")
        log.info("resuming the run in %s: finished tasks are skipped", work)
        return float(old["started"])
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    run.write_text(json.dumps({"fingerprint": fingerprint, "started": started}), encoding="utf-8")
    return started


def build_jobs(cfg: CurationConfig, dt: DatatroveConfig, inputs: list[Path], work: Path,
               context: dict[str, Any]) -> list[tuple[str, list, int]]:
    """``[(job name, pipeline steps, tasks), ...]`` in the order they must run."""
    from datatrove.pipeline.dedup.exact_dedup import ExactDedupConfig, ExactFindDedups
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupBuckets

    from scratchllm.data.curation import datatrove_dedup as dd
    from scratchllm.data.curation import datatrove_steps as st

    n = int(dt.tasks)
    w = str(work)
    buckets, rows = minhash_shape(cfg.near_dedup, dt)
    mh = MinhashConfig(n_grams=cfg.near_dedup.shingle_size, num_buckets=buckets, hashes_per_bucket=rows,
                       seed=cfg.near_dedup.seed)
    ex = ExactDedupConfig(content_getter=dd.doc_text, document_priority=dd.doc_priority)
    read: list = [st.ReadStep(w, cfg, plan_pieces(inputs, n, cfg.read.encoding)), st.NormalizeStep(w, cfg)]
    if cfg.exact_dedup.enabled:
        read.append(dd.ExactSignatures(f"{w}/exact/sigs", ex))
    if cfg.near_dedup.enabled:
        read.append(dd.MinhashSignatures(f"{w}/minhash/sigs", mh, cfg.near_dedup.shingle_size, f"{w}/minhash/full"))
    jobs: list[tuple[str, list, int]] = [("read", read, n)]
    if cfg.exact_dedup.enabled:
        jobs.append(("exact_find", [ExactFindDedups(f"{w}/exact/sigs", f"{w}/exact/dups", ex)], 1))
    if cfg.near_dedup.enabled:
        jobs.append(("buckets", [MinhashDedupBuckets(f"{w}/minhash/sigs", f"{w}/minhash/buckets", config=mh)],
                     buckets))
        jobs.append(("cluster", [dd.VerifiedCluster(f"{w}/minhash/buckets", f"{w}/minhash/remove", mh,
                                                    f"{w}/minhash/full", cfg.near_dedup.threshold)], 1))
    filt: list = [st.LoadNormalized(w, cfg)]
    if cfg.exact_dedup.enabled:
        filt.append(dd.ExactFilter(w, cfg, f"{w}/exact/dups", ex))
    if cfg.near_dedup.enabled:
        filt.append(dd.NearFilter(w, cfg))
    if cfg.language.enabled:
        filt.append(st.LanguageStep(w, cfg))
    if cfg.quality.enabled:
        filt.append(st.QualityStep(w, cfg))
    filt.append(st.TokenShardWriter(w, cfg))
    jobs += [("filter", filt, n), ("finalize", [st.Finalize(w, cfg, context)], 1)]
    return jobs


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent(_: object = None) -> None:
    """In a forked child: ask the kernel for SIGKILL when the parent (the process that forked it) dies."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@functools.lru_cache(maxsize=1)  # once per process
def _children_die_with_this_process() -> None:
    """datatrove's local executor starts a ``multiprocess.Manager`` server process, which waits forever for its
    caller: a command killed with SIGKILL (``kill -9``, the OOM killer) left it running, orphaned. On Linux every
    process ``multiprocess`` forks from here (the manager, fork-started pool workers) dies with this one."""
    if sys.platform.startswith("linux"):
        from multiprocess import util

        util.register_after_fork(_die_with_parent, _die_with_parent)  # held weakly: a module function lives on


def _executor(name: str, pipeline: list, tasks: int, dt: DatatroveConfig, work: Path, depends: Any) -> Any:
    logs = str(work / "logs" / name)
    workers = min(int(dt.workers), tasks) if dt.workers else tasks
    if dt.kind == "local":
        from datatrove.executor import LocalPipelineExecutor

        _children_die_with_this_process()

        # fork: the workers inherit the loaded modules and models (forkserver would re-import torch per task)
        return LocalPipelineExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=logs,
                                     start_method="fork", depends=depends)
    if dt.kind == "slurm":
        from datatrove.executor import SlurmPipelineExecutor

        s = dt.slurm
        env = s.env_command or f"source {Path(sys.prefix) / 'bin' / 'activate'}"
        return SlurmPipelineExecutor(pipeline, tasks=tasks, workers=workers if dt.workers else -1, time=s.time,
                                     partition=s.partition, cpus_per_task=s.cpus_per_task,
                                     mem_per_cpu_gb=s.mem_per_cpu_gb, job_name=f"{s.job_name}-{name}",
                                     env_command=env, sbatch_args=dict(s.sbatch_args), qos=s.qos, logging_dir=logs,
                                     slurm_logs_folder=str(work / "slurm_logs" / name), depends=depends,
                                     mail_type="NONE", requeue_signals=None)
    from datatrove.executor.ray import RayPipelineExecutor

    return RayPipelineExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=logs, depends=depends,
                               cpus_per_task=dt.ray.cpus_per_task, mem_per_cpu_gb=dt.ray.mem_per_cpu_gb)


def curate_datatrove(cfg: CurationConfig, dt: DatatroveConfig):  # -> CurationResult | None
    """Run (local, ray) or submit (slurm) the jobs of the module docstring. Local and Ray return the
    ``CurationResult``; Slurm returns None once the jobs are submitted (or their scripts written)."""
    from scratchllm.data.curation.pipeline import CurationResult, _check_output
    from scratchllm.data.curation.readers import resolve_inputs
    from scratchllm.data.folders import load_prepared, prepared_folder_hint

    _check(cfg, dt)
    inputs = [Path(p) for p in resolve_inputs(cfg.input, cfg.read)]
    out = Path(cfg.output).expanduser()
    _check_output(out, cfg.overwrite)
    work = work_dir(cfg, dt)
    fingerprint = _fingerprint(inputs, cfg, dt)
    started = _claim_work(work, fingerprint)
    context = {"tasks": int(dt.tasks), "kind": dt.kind, "started": started, "fingerprint": fingerprint,
               "executor": {**asdict(dt), "work_dir": str(work)}, "config": asdict(cfg)}
    jobs = build_jobs(cfg, dt, inputs, work, context)
    if cfg.language.enabled:
        from scratchllm.data.curation import language

        language.scorer(cfg.language)  # fail fast on a missing model; forked workers inherit it
    if dt.kind == "slurm":
        from scratchllm.data.curation.datatrove_slurm import submit

        submit(jobs, dt, work, lambda name, pipe, n, dep: _executor(name, pipe, n, dt, work, dep))
        return None
    for name, pipeline, tasks in jobs:
        log.info("datatrove job %s: %d task(s)", name, tasks)
        _executor(name, pipeline, tasks, dt, work, None).run()
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    if not dt.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return CurationResult(out, report, load_prepared(out, rebuild_hint=prepared_folder_hint(out)))
