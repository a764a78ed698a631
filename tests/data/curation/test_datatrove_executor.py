"""``executor=datatrove``: the same kept documents and tokens as the embedded executor on 2 local tasks, a balanced
report, shards the trainer reads, resuming after a crash, the Slurm dry run's scripts, Ray (when installed), and
no network at any point."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("datatrove", reason="executor=datatrove needs the datatrove package (pip install datatrove)")

from scratchllm.data import open_shard  # noqa: E402
from scratchllm.data.curation import curate  # noqa: E402
from scratchllm.data.curation.datatrove_config import DatatroveConfig, minhash_shape, plan_pieces  # noqa: E402
from scratchllm.data.curation.datatrove_executor import curate_datatrove, work_dir  # noqa: E402
from scratchllm.data.curation.datatrove_steps import TokenShardWriter, iter_jsonl_piece  # noqa: E402
from scratchllm.data.curation.readers import iter_records  # noqa: E402
from scratchllm.errors import ConfigError  # noqa: E402

from .conftest import mixed_corpus, prepare_config, read_jsonl  # noqa: E402

COMMON = ("keep_text=true", "val_fraction=0.2")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """test_curation_pipeline's corpus, plus empty documents and documents without an id."""
    return mixed_corpus(tmp_path_factory.mktemp("corpus") / "corpus.jsonl", awkward=True)


@pytest.fixture
def no_network(monkeypatch):
    """An internet connection attempt in this process (and in forked task workers) fails the test. Unix sockets
    stay open: datatrove's local executor talks to its multiprocessing manager through one."""
    real_connect = socket.socket.connect

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise AssertionError(f"network access attempted: {address}")
        return real_connect(self, address)

    def create_connection(address, *args, **kwargs):
        raise AssertionError(f"network access attempted: {address}")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


NO_NETWORK_SITE = """
import socket
_connect = socket.socket.connect
def _refuse(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        raise OSError(f"network disabled by the test (connect to {address})")
    return _connect(self, address)
socket.socket.connect = _refuse
"""


def offline_env(tmp_path: Path) -> dict[str, str]:
    """The environment for a subprocess that cannot open internet connections (a sitecustomize refuses them)."""
    site = tmp_path / "offline_site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(NO_NETWORK_SITE, encoding="utf-8")
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path, "HF_HUB_OFFLINE": "1"}


def _tokens(folder: Path, split: str) -> np.ndarray:
    return np.concatenate([np.asarray(open_shard(p)[1]) for p in sorted(folder.glob(f"{split}_*.bin"))])


def _dt(**kw) -> DatatroveConfig:
    return DatatroveConfig.from_mapping({"tasks": 2, "workers": 1, **kw})


def test_plan_pieces_read_every_line_once_with_the_same_ids(corpus, tmp_path) -> None:
    cfg = prepare_config(f"input={corpus}", f"output={tmp_path / 'o'}")
    whole = [(r.id, getattr(r, "text", None)) for r in iter_records([corpus], cfg.read)]
    for tasks in (1, 2, 3, 7):
        plan = plan_pieces([corpus], tasks)
        assert len(plan) == tasks
        pieces = [(r.id, getattr(r, "text", None)) for task in plan for p, a, b in task
                  for r in iter_jsonl_piece(Path(p), a, b, cfg)]
        assert pieces == whole
    assert minhash_shape(cfg.near_dedup, _dt()) == (32, 4)  # our bands x rows (the threshold is verified)


def test_agrees_with_embedded_and_balances(corpus, tmp_path, no_network) -> None:
    emb = curate(prepare_config(f"input={corpus}", f"output={tmp_path / 'emb'}", *COMMON))
    cfg = prepare_config(f"input={corpus}", f"output={tmp_path / 'dt'}", *COMMON)
    res = curate_datatrove(cfg, _dt(workers=2))  # 2 tasks in 2 processes
    r = res.report
    assert r["balanced"] and r["documents_in"] == emb.report["documents_in"] == 56
    kept_dt = [d["id"] for d in read_jsonl(res.output / "curated.jsonl")]
    kept_emb = [d["id"] for d in read_jsonl(emb.output / "curated.jsonl")]
    assert set(kept_dt) ^ set(kept_emb) == set(), "kept documents differ"
    assert kept_dt == kept_emb  # and in the same order
    removed = read_jsonl(res.output / "removed.jsonl")
    assert len(removed) + len(kept_dt) == r["documents_in"]
    near = {d["id"]: d["duplicate_of"] for d in removed if d["stage"] == "near_dedup"}
    assert near == {d["id"]: d["duplicate_of"] for d in read_jsonl(emb.output / "removed.jsonl")
                    if d["stage"] == "near_dedup"}  # each names the kept first document of its cluster
    by_stage = {s["stage"]: s for s in r["stages"]}
    emb_stage = {s["stage"]: s for s in emb.report["stages"]}
    for name, s in by_stage.items():
        assert s["documents_in"] == s["documents_out"] + s["documents_removed"]
        assert s["removed"] == emb_stage[name]["removed"], name
    assert {p.name for p in emb.output.iterdir()} == {p.name for p in res.output.iterdir()} - {
        p.name for p in res.output.glob("*_00000[1-9].bin")}
    for split in ("train", "val"):  # the same tokens, in the same order
        assert np.array_equal(_tokens(res.output, split), _tokens(emb.output, split))
    manifest = json.loads((res.output / "manifest.json").read_text())
    assert manifest["documents"] == json.loads((emb.output / "manifest.json").read_text())["documents"]
    assert not work_dir(cfg, _dt()).exists()  # removed after a successful run


def test_shards_train(corpus, tmp_path, no_network) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from scratchllm.paths import config_dir
    from scratchllm.training.run import train

    res = curate_datatrove(prepare_config(f"input={corpus}", f"output={tmp_path / 'dt'}", *COMMON), _dt())
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(config_dir()), version_base="1.3"):
            cfg = compose("train", return_hydra_config=True, overrides=[
                "model=nano", "model.context_length=32", "data=shards", f"data.path={res.output}",
                "data.batch_size=4", "data.max_val_windows=4", "trainer.max_steps=2", "trainer.val_check_interval=2",
                "scheduler.warmup_steps=1", "sample.max_new_tokens=4", "logger=csv", "heap=default",
                f"paths.root_dir={tmp_path}", f"paths.cache_dir={tmp_path / 'cache'}"])
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / "run")
            cfg.hydra.runtime.output_dir = str(tmp_path / "run")
            cfg.hydra.job.num = 0
        HydraConfig().set_config(cfg)
        result = train(cfg)
    finally:
        GlobalHydra.instance().clear()
    assert result["global_step"] == 2 and np.isfinite(result["val_loss"])


def test_killed_run_resumes_skipping_finished_tasks(corpus, tmp_path, monkeypatch, no_network) -> None:
    cfg = prepare_config(f"input={corpus}", f"output={tmp_path / 'dt'}", *COMMON)
    dt = _dt(keep_work=True)
    real = TokenShardWriter.run

    def crash_on_task_1(self, data, rank=0, world_size=1):
        if rank == 1:
            raise KeyboardInterrupt("killed")  # what a kill looks like from inside the task
        yield from real(self, data, rank, world_size)

    monkeypatch.setattr(TokenShardWriter, "run", crash_on_task_1)
    with pytest.raises(KeyboardInterrupt):
        curate_datatrove(cfg, dt)
    work = work_dir(cfg, dt)
    done = {p.relative_to(work): p.stat().st_mtime_ns for p in work.glob("logs/*/completions/*")}
    assert Path("logs/filter/completions/00000") in done and Path("logs/filter/completions/00001") not in done
    assert Path("logs/read/completions/00001") in done and not cfg_output(cfg).exists()
    task_log = work / "logs" / "read" / "logs" / "task_00000.log"
    before = task_log.stat().st_mtime_ns

    monkeypatch.setattr(TokenShardWriter, "run", real)
    res = curate_datatrove(cfg, dt)
    assert task_log.stat().st_mtime_ns == before  # finished tasks were skipped, not re-run
    for path, mtime in done.items():
        assert (work / path).stat().st_mtime_ns == mtime
    assert (work / "logs" / "filter" / "completions" / "00001").is_file()
    fresh = curate_datatrove(prepare_config(f"input={corpus}", f"output={tmp_path / 'fresh'}", *COMMON), _dt())
    assert res.report["documents_out"] == fresh.report["documents_out"] and res.report["balanced"]
    assert (res.output / "removed.jsonl").read_text() == (fresh.output / "removed.jsonl").read_text()
    for split in ("train", "val"):
        assert np.array_equal(_tokens(res.output, split), _tokens(fresh.output, split))
    # other settings on the same work folder: refused with the fix
    with pytest.raises(ConfigError, match="rm -r"):
        (work / "run.json").write_text(json.dumps({"fingerprint": "other", "started": 0}))
        curate_datatrove(prepare_config(f"input={corpus}", f"output={tmp_path / 'dt2'}", *COMMON,
                                        ), _dt(work_dir=str(work)))


def cfg_output(cfg) -> Path:
    return Path(cfg.output)


def test_slurm_dry_run_writes_readable_scripts(corpus, tmp_path) -> None:
    out = tmp_path / "dt"
    env = offline_env(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "scratchllm.prepare", f"input={corpus}", f"output={out}", "executor=datatrove",
         "executor.kind=slurm", "executor.tasks=3", "executor.workers=2", "executor.dry_run=true",
         "executor.slurm.partition=cpu-long", "executor.slurm.time=02:00:00", "progress=false"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = tmp_path / "dt.datatrove-work" / "slurm"
    assert "nothing submitted" in proc.stdout and not out.exists()
    submit = (folder / "submit.sh").read_text()
    jobs = ["read", "exact_find", "buckets", "cluster", "filter", "finalize"]
    scripts = sorted(p.name for p in folder.glob("*.sbatch") if "merge_stats" not in p.name)
    assert scripts == [f"{i:02d}_{j}.sbatch" for i, j in zip(range(1, 12, 2), jobs)]
    lines = [ln for ln in submit.splitlines() if ln.startswith("JOB_") and "merge_stats" not in ln]
    assert len(lines) == 6 and "--dependency" not in lines[0]
    for prev, line in zip(lines, lines[1:]):  # each job waits for the one before it
        assert f"afterok:${prev.split('=')[0]}" in line
    read = (folder / "01_read.sbatch").read_text()
    assert "#SBATCH --array=0-2%2" in read and "#SBATCH --partition=cpu-long" in read
    assert "#SBATCH --time=02:00:00" in read and "#SBATCH --job-name=scratchllm-prepare-read" in read
    assert "launch_pickled_pipeline" in read and "logs/read/executor.pik" in read and "source " in read
    assert "#SBATCH --array=0-31" in (folder / "05_buckets.sbatch").read_text()  # one task per MinHash bucket
    assert "#SBATCH --array=0-0" in (folder / "11_finalize.sbatch").read_text()
    assert (tmp_path / "dt.datatrove-work" / "logs" / "read" / "executor.pik").is_file()
    # a merge-stats job waits for its stage through submit.sh's variable, never through a placeholder id in its file
    merges = sorted(folder.glob("*_merge_stats.sbatch"))
    assert merges and not any("DRYRUN" in p.read_text() for p in folder.glob("*.sbatch"))
    merge_lines = [ln for ln in submit.splitlines() if ln.startswith("JOB_") and "merge_stats" in ln]
    assert len(merge_lines) == len(merges) and all("--dependency=afterok:$JOB_" in ln for ln in merge_lines)
    assert "DRYRUN" not in submit


def test_ray_runs_locally_when_installed(corpus, tmp_path) -> None:
    pytest.importorskip("ray", reason="Ray is an optional extra (pip install ray); executor.kind=ray is untested "
                                      "without it")
    res = curate_datatrove(prepare_config(f"input={corpus}", f"output={tmp_path / 'dt'}", *COMMON),
                           _dt(kind="ray"))
    assert res.report["balanced"]


def test_config_errors(corpus, tmp_path) -> None:
    cfg = prepare_config(f"input={corpus}", f"output={tmp_path / 'o'}", "tokenizer=char")
    with pytest.raises(ConfigError, match="fixed vocabulary"):
        curate_datatrove(cfg, _dt())
    with pytest.raises(ConfigError, match="executor.kind"):
        DatatroveConfig.from_mapping({"kind": "k8s"})
    with pytest.raises(ConfigError, match="dry_run"):
        DatatroveConfig.from_mapping({"dry_run": True})
    with pytest.raises(ConfigError, match="executor.taskz"):
        DatatroveConfig.from_mapping({"taskz": 3})


def test_empty_split_borrows_like_embedded(tmp_path) -> None:
    """A split left empty (tiny corpus, small val_fraction) gets the other's last document, as in embedded.

    Its own corpus, every document with an id: the module's corpus has documents whose ids are their path:line, so
    where pytest's temporary folder is decided which split they draw, and now and then one drew val (CI, once)."""
    corpus = mixed_corpus(tmp_path / "corpus.jsonl")
    args = ("keep_text=true", "val_fraction=0.001")
    emb = curate(prepare_config(f"input={corpus}", f"output={tmp_path / 'emb'}", *args))
    res = curate_datatrove(prepare_config(f"input={corpus}", f"output={tmp_path / 'dt'}", *args), _dt())
    # (embedded's curated.jsonl keeps the split drawn before the move; datatrove's names the split it went to)
    assert [(d["id"], d["text"]) for d in read_jsonl(res.output / "curated.jsonl")] == \
        [(d["id"], d["text"]) for d in read_jsonl(emb.output / "curated.jsonl")]
    for split in ("train", "val"):
        assert np.array_equal(_tokens(res.output, split), _tokens(emb.output, split))
    assert res.report["balanced"] and res.prepared.val_tokens == emb.prepared.val_tokens > 0
    notes = {s["stage"]: s.get("notes", {}) for s in res.report["stages"]}["tokenize"]
    assert "moved to val" in notes


@pytest.mark.slow
def _group_members(pgid: int, wait_s: float = 0.0) -> list[str]:
    """Command lines of the live processes of process group ``pgid`` (waiting up to ``wait_s`` for it to empty)."""
    import time

    deadline = time.monotonic() + wait_s
    while True:
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if fields[0] != "Z" and int(fields[2]) == pgid:
                    found.append((stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:200])
            except (OSError, IndexError, ValueError):
                continue
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.1)


def test_sigkilled_command_resumes(corpus, tmp_path) -> None:
    """The command line, killed (SIGKILL) as soon as its first task finished, then run again: the finished tasks
    are skipped and the output is what an uninterrupted run writes."""
    import signal
    import time

    args = [sys.executable, "-m", "scratchllm.prepare", f"input={corpus}", "executor=datatrove", "executor.tasks=2",
            "executor.workers=1", "executor.keep_work=true", "progress=false", "keep_text=true", "val_fraction=0.2"]
    env = offline_env(tmp_path)
    work = tmp_path / "dt.datatrove-work"
    first = work / "logs" / "read" / "completions" / "00000"
    # its own process group: what the command leaves behind can be found (and cleaned up) after the kill
    proc = subprocess.Popen([*args, f"output={tmp_path / 'dt'}"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # the command's own process only, as `kill -9 <pid>` or the OOM killer do
    proc.wait()
    try:
        # datatrove's multiprocess manager used to outlive it, orphaned, forever: now it dies with the command
        left = _group_members(proc.pid, wait_s=10)
        assert not left, f"processes left running after the command was killed: {left}"
    finally:
        if _group_members(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
    assert first.exists() and not (tmp_path / "dt").exists(), "killed too late: the run had finished"
    marker = first.stat().st_mtime_ns
    log = (work / "logs" / "read" / "logs" / "task_00000.log").stat().st_mtime_ns
    again = subprocess.run([*args, f"output={tmp_path / 'dt'}"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Skipping" in again.stderr  # datatrove: "Skipping 1 already completed tasks"
    assert first.stat().st_mtime_ns == marker
    assert (work / "logs" / "read" / "logs" / "task_00000.log").stat().st_mtime_ns == log  # not run again
    fresh = curate_datatrove(prepare_config(f"input={corpus}", f"output={tmp_path / 'fresh'}", *COMMON), _dt())
    for name in ("removed.jsonl", "curated.jsonl"):
        assert (tmp_path / "dt" / name).read_text() == (fresh.output / name).read_text()
    for split in ("train", "val"):
        assert np.array_equal(_tokens(tmp_path / "dt", split), _tokens(fresh.output, split))
