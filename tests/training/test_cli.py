"""The real entry point in subprocesses: Hydra errors, a multirun sweep, and a 2-process DDP run on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.training.conftest import FAST, run_cli

pytestmark = pytest.mark.slow


def _event_tags(run_dir: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    tags = set()
    for events in run_dir.rglob("events.out.tfevents.*"):
        for event in EventFileLoader(str(events)).Load():
            for value in event.summary.value:
                tags.add(value.tag)
    return tags


def _one_line_stderr(proc) -> str:
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_unknown_group_option_is_one_line(tmp_path):
    err = _one_line_stderr(run_cli("-m", "scratchllm.train", "model=nope", cwd=tmp_path))
    assert "model=nope is not an option of model/" in err and "nano" in err and "gpt2-124m" in err


def test_unknown_key_override_is_one_line(tmp_path):
    err = _one_line_stderr(run_cli("-m", "scratchllm.train", "model.n_layers=3", cwd=tmp_path))
    # Hydra's own hint (+model.n_layers=3) would end in a traceback; the fix is the real key
    assert "did you mean model.n_layer=3?" in err and "+model" not in err


def test_bad_variant_exits_2_with_one_line(tmp_path):
    proc = run_cli("-m", "scratchllm.train", "model.attention=flash", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("error: model.attention='flash'")
    assert "Traceback" not in proc.stderr


def test_multirun_sweep_yields_runs_with_tensorboard_hparams(tmp_path):
    # The README's sweep as a user types it: no path overrides (a paths.root_dir here once hid a crash of every
    # sweep: hydra.sweep.dir was resolved through ${hydra:runtime.cwd} before Hydra had set it).
    proc = run_cli(
        "-m", "scratchllm.train", "-m", "model.norm=layernorm,rmsnorm", "model.position=learned,rope",
        "trainer.max_steps=4", "trainer.val_check_interval=2", "sample.max_new_tokens=0",
        "data.max_val_windows=16", "trainer.log_every_n_steps=1",
        cwd=tmp_path, env_extra={"SCRATCHLLM_ROOT": ""},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweeps = list((tmp_path / "logs" / "train" / "multiruns").iterdir())
    assert len(sweeps) == 1
    runs = sorted(p for p in sweeps[0].iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in runs] == ["0", "1", "2", "3"]
    assert (tmp_path / "data_cache").is_dir()  # logs/ and data_cache/ in the folder the command ran in
    norms = set()
    for run in runs:
        assert (run / ".hydra" / "config.yaml").is_file()
        tags = _event_tags(run)
        assert "_hparams_/session_start_info" in tags, tags  # an HPARAMS entry
        assert "hp/val_loss" in tags and "train/loss" in tags and "val/loss" in tags
        norms.add(next(l for l in (run / ".hydra" / "overrides.yaml").read_text().splitlines() if "model.norm" in l))
    assert len(norms) == 2 and len({(r / ".hydra" / "overrides.yaml").read_text() for r in runs}) == 4


def test_ddp_sim_two_cpu_processes(tmp_path, data_cache):
    proc = run_cli(
        "-m", "scratchllm.train", "trainer=ddp_sim", *FAST, "trainer.max_steps=4", "trainer.val_check_interval=2",
        f"paths.root_dir={tmp_path}", f"paths.cache_dir={data_cache}", "hydra.run.dir=" + str(tmp_path / "run"),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "result:" in proc.stdout
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    # 2 ranks x 4 steps x batch 8 x context 32
    assert result["tokens_seen"] == 2 * 4 * 8 * 32 and result["global_step"] == 4
    assert result["train_seconds"] > 0 and result["tokens_per_s"] > 0  # measured in the spawned ranks
    assert list((tmp_path / "run" / "checkpoints").glob("*.ckpt"))
