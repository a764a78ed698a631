"""What a user sees around a training run: the end-of-run summary, the sample in TensorBoard, a resume that has
nothing left to do, the progress bar after a resume, and the thread choice."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from scratchllm.errors import ConfigError
from scratchllm.threads import busy_cores, check_threads, choose_threads
from scratchllm.training.summary import run_summary, sparkline
from tests.training.conftest import run_cli

QUICK = ["trainer.val_check_interval=3", "trainer.log_every_n_steps=1", "data.max_val_windows=8",
         "sample.max_new_tokens=16"]


def test_sparkline_scales_between_min_and_max():
    assert sparkline([3.0, 2.0, 1.0]) == "█▅▁"
    assert sparkline([1.0, 1.0]) == "▁▁" and sparkline([]) == ""


def test_summary_lists_curve_best_speed_and_folder(tmp_path):
    curve = [{"step": s, "tokens_seen": s * 100, "train_seconds": s / 10, "val_loss": v}
             for s, v in [(10, 3.0), (20, 2.5), (30, 2.6), (40, 2.55)]]
    text = run_summary({"curve": curve, "val_loss": 2.55, "global_step": 40, "tokens_seen": 4000,
                        "train_seconds": 4.0, "tokens_per_s": 1000}, tmp_path / "run", rows=3)
    assert "3.0000 → 2.5500" in text and "best 2.5000 at step 20" in text
    rows = [line for line in text.splitlines() if re.match(r"\s+\d+ ", line)]
    assert [int(r.split()[0]) for r in rows] == [10, 30, 40]  # 3 rows picked evenly, the last always
    assert "1,000 tokens/s" in text and str(tmp_path / "run") in text


def test_threads_auto_counts_cores_other_processes_keep_busy():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import time

        time.sleep(0.3)
        assert busy_cores(0.5) >= 0.6
        choice = choose_threads("auto")
        assert choice.threads >= 1 and "busy" in choice.reason
    finally:
        spinner.kill()
    assert choose_threads(3).threads == 3 and choose_threads(None).threads == 0
    for bad in (0, -1, "many", True, 1.5):
        with pytest.raises(ConfigError, match="threads must be auto"):
            check_threads(bad)


@pytest.mark.slow
def test_run_end_resume_and_progress_bar(tmp_path):
    first = run_cli("-m", "scratchllm.train", "trainer.max_steps=6", *QUICK, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    # the summary: curve with a sparkline, best loss, speed, where the run is
    summary = first.stdout[first.stdout.index("----- run summary -----"):]
    assert re.search(r"validation loss  [▁▂▃▄▅▆▇█]{2}  \d\.\d{4} → \d\.\d{4}  \(best \d\.\d{4} at step \d\)", summary)
    assert re.search(r"6 steps, [\d,]+ tokens, [\d.]+ s training, [\d,]+ tokens/s", summary)
    run_dir = next((tmp_path / "logs" / "train" / "runs").iterdir())
    assert f"run folder       logs/train/runs/{run_dir.name}" in summary
    result = json.loads((run_dir / "result.json").read_text())
    assert result["tokens_per_s"] > 0 and result["threads"] >= 1
    # the sample reaches TensorBoard as text
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    event_file = next(run_dir.rglob("events.out.tfevents.*"))
    events = EventAccumulator(str(event_file.parent), size_guidance={"tensors": 0}).Reload()  # every file
    assert "sample/text_summary" in events.Tags()["tensors"]
    text = events.Tensors("sample/text_summary")[0].tensor_proto.string_val[0].decode()
    assert result["sample"].strip()[:10] in text

    # resuming a finished run says so instead of exiting silently
    again = run_cli("-m", "scratchllm.train", "trainer.max_steps=6", "ckpt_path=last", *QUICK, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "note: nothing to train:" in again.stderr and "trainer.max_steps=12" in again.stderr

    # training on after a resume: the bar counts optimizer steps from the restored one, at a positive rate
    more = run_cli("-m", "scratchllm.train", "trainer.max_steps=9", "ckpt_path=last", *QUICK, cwd=tmp_path)
    assert more.returncode == 0, more.stderr[-3000:]
    bars = [line for line in more.stdout.replace("\r", "\n").splitlines() if line.startswith("train:")]
    assert bars and "9/9" in bars[-1], bars[-3:]
    rates = [float(r) for r in re.findall(r"(-?[\d.]+)(?:it/s|s/it)", "\n".join(bars))]
    assert rates and min(rates) >= 0, rates


@pytest.mark.slow
def test_bad_threads_value_is_one_line(tmp_path):
    proc = run_cli("-m", "scratchllm.train", "threads=many", "trainer.max_steps=2", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: threads must be auto")

