"""Runs that start together never mix their work (#13): a data cache is built once while the others wait and reuse
it, a second ``prepare`` to the same output is refused with one line, and five trainings started in the same
second get five run folders and share one cache."""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scratchllm.data import TextFiles, open_shard, prepare_corpus
from scratchllm.data.curation import curate
from scratchllm.errors import ConfigError

from tests.data.curation.conftest import prepare_config, write_jsonl

FORK = mp.get_context("fork")  # the children share this process's imports: no start-up cost
PROSE = "Now is the winter of our discontent made glorious summer by this sun of York; "


def _corpus(folder: Path, n_files: int = 40) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_files):
        (folder / f"{i:03d}.txt").write_text(f"Part {i}. " + PROSE * 400, encoding="utf-8")
    return folder


def _build_in_child(cache: str, corpus: str, barrier, results) -> None:
    """One training's data step: prepare the cache, then verify every shard (as ``setup`` does)."""
    built = []

    class Built(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("prepared "):
                built.append(record.getMessage())

    log = logging.getLogger("scratchllm.data.prepare")
    log.addHandler(Built())
    log.setLevel(logging.INFO)
    try:
        barrier.wait(timeout=60)
        data = prepare_corpus(TextFiles(corpus, val_fraction=0.1), "char", cache)
        for path in data.train + data.val:
            open_shard(path, verify=True)
        results.put(("ok", str(data.directory), len(built)))
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which fails the test with it
        results.put(("error", f"{type(e).__name__}: {e}", len(built)))


def test_racing_cache_builds_build_once_and_share(tmp_path) -> None:
    corpus = _corpus(tmp_path / "corpus")
    n = 4
    barrier, results = FORK.Barrier(n), FORK.Queue()
    procs = [FORK.Process(target=_build_in_child, args=(str(tmp_path / "cache"), str(corpus), barrier, results))
             for _ in range(n)]
    for p in procs:
        p.start()
    got = [results.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert all(status == "ok" for status, _, _ in got), got
    assert len({folder for _, folder, _ in got}) == 1
    assert sum(builds for _, _, builds in got) == 1, got  # before: every process built (and deleted) its own
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [Path(got[0][1]).name]  # no temp or lock files


def _killed_mid_build(cache: str, corpus: str) -> None:
    from scratchllm.data.prepare import ShardWriter

    def die(self) -> None:  # kill -9 while the first shard is written: lock held, temp folder half full
        os.kill(os.getpid(), signal.SIGKILL)

    ShardWriter.flush = die
    prepare_corpus(TextFiles(corpus, val_fraction=0.1), "char", cache)


def test_a_build_killed_midway_leaves_nothing_in_the_way(tmp_path) -> None:
    corpus = _corpus(tmp_path / "corpus", n_files=4)
    child = FORK.Process(target=_killed_mid_build, args=(str(tmp_path / "cache"), str(corpus)))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == -signal.SIGKILL
    assert any(p.name.endswith(".tmp") for p in (tmp_path / "cache").iterdir())  # what it left
    data = prepare_corpus(TextFiles(str(corpus), val_fraction=0.1), "char", tmp_path / "cache")  # not blocked
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [data.directory.name]  # and cleaned up


def _curate_paused(output: str, corpus: str, started, release, results) -> None:
    """A prepare run that stops in the middle of writing ``output`` until ``release`` is set."""
    from scratchllm.data.curation import pipeline

    keep = pipeline._Run.keep

    def slow_keep(self, docs):
        started.set()
        release.wait(timeout=120)
        return keep(self, docs)

    pipeline._Run.keep = slow_keep
    try:
        res = curate(prepare_config(f"input={corpus}", f"output={output}", "tokenizer=char", "prepare=minimal",
                                     "near_dedup.enabled=false"))
        results.put(("ok", res.report["documents_out"]))
    except BaseException as e:  # noqa: BLE001
        results.put(("error", f"{type(e).__name__}: {e}"))


def test_a_second_prepare_to_the_same_output_is_refused(tmp_path) -> None:
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"id": f"d{i}", "text": f"Document {i}: " + PROSE * (3 + i)}
                                                for i in range(12)])
    out = tmp_path / "prepared" / "mine"
    started, release, results = FORK.Event(), FORK.Event(), FORK.Queue()
    first = FORK.Process(target=_curate_paused, args=(str(out), str(corpus), started, release, results))
    first.start()
    try:
        assert started.wait(timeout=120), "the first run never got going"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for var in ("PYTEST_CURRENT_TEST", "SCRATCHLLM_ROOT"):  # logs/ go in tmp_path
            env.pop(var, None)
        second = subprocess.run(
            [sys.executable, "-m", "scratchllm.prepare", f"input={corpus}", f"output={out}", "tokenizer=char",
             "prepare=minimal", "near_dedup.enabled=false", "progress=false", "workers=1"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    finally:
        release.set()
    assert results.get(timeout=300) == ("ok", 12)
    first.join(timeout=60)
    # before: both runs reported success and one result was silently lost
    assert second.returncode == 2, second.stdout[-2000:] + second.stderr[-2000:]
    errors = [line for line in second.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: another prepare run (process {first.pid}) is writing {out}; wait for it to finish, "
                      "or choose another output="]
    assert json.loads((out / "manifest.json").read_text())["documents"]["train"] >= 1
    with pytest.raises(ConfigError, match="overwrite=true"):  # once it is done, overwrite=false still holds
        curate(prepare_config(f"input={corpus}", f"output={out}", "tokenizer=char", "prepare=minimal"))
    assert sorted(p.name for p in out.parent.iterdir()) == ["mine"]  # no lock or temp left beside it


def test_run_stamps_are_unique_and_sort_by_time() -> None:
    from scratchllm.paths import run_stamp

    stamps = [run_stamp() for _ in range(50)]
    assert len(set(stamps)) == 50
    times = [s[:26] for s in stamps]  # 2026-12-02_05-25-03_481516: to the microsecond
    assert times == sorted(times)
    date, clock, micro, suffix = stamps[0].split("_")
    assert (len(date), len(clock), len(micro), len(suffix)) == (10, 8, 6, 6)


# Five trainings told to start at one instant: each imports first, then waits for that moment, so they all
# compose their config (and name their run folder) within about a second.
_AT_ONCE = ("import sys, time\n"
            "from scratchllm.train import main\n"
            "time.sleep(max(0.0, float(sys.argv[1]) - time.time()))\n"
            "sys.argv = ['scratchllm.train', *sys.argv[2:]]\n"
            "main()\n")


@pytest.mark.slow
def test_five_trainings_started_at_once(tmp_path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(PROSE * 300, encoding="utf-8")
    overrides = ["model=nano", "model.context_length=32", "data=text_files", f"data.path={corpus}",
                 "data.batch_size=4", "data.max_val_windows=4", "trainer.max_steps=2", "trainer.val_check_interval=2",
                 "scheduler.warmup_steps=1", "sample.max_new_tokens=0", "threads=1"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    for var in ("PYTEST_CURRENT_TEST", "SCRATCHLLM_ROOT"):  # logs/ and data_cache/ go in tmp_path
        env.pop(var, None)
    start = float(int(time.time()) + 10)  # a whole second, after the five have imported
    procs = [subprocess.Popen([sys.executable, "-c", _AT_ONCE, str(start), *overrides], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(5)]
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0] * 5, "\n".join(err[-1500:] for _, err in outs)
    runs = sorted((tmp_path / "logs" / "train" / "runs").iterdir())
    assert len(runs) == 5  # before: runs started in the same second shared a folder
    for run in runs:
        assert (run / "checkpoints" / "last.ckpt").is_file() and (run / ".hydra" / "config.yaml").is_file()
        # one training's metrics per folder: event files are named events.out.tfevents.<time>.<host>.<pid>.<n>
        assert len({p.name.split(".")[-2] for p in run.glob("**/events.out.tfevents.*")}) == 1
    assert len([p for p in (tmp_path / "data_cache").iterdir() if not p.name.startswith(".")]) == 1
    assert [p for p in (tmp_path / "data_cache").iterdir() if p.name.startswith(".")] == []
