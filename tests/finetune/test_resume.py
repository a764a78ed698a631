"""A fine-tuning run resumed from a mid-run checkpoint (``ckpt_path=``) continues the data order exactly: the same
batches, losses and final weights as the uninterrupted run, across an epoch boundary (like the pretraining
exact-resume test in tests/training/test_train.py)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from scratchllm.cli import report_user_errors
from scratchllm.paths import config_dir
from scratchllm.training.run import train


def run(tmp_path: Path, output: str, *overrides: str) -> Path:
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[f"paths.root_dir={tmp_path}", "threads=null", "heap=default", *overrides],
                      return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.output_dir = cfg.hydra.runtime.output_dir = str(tmp_path / output)
        cfg.hydra.job.num = 0
    HydraConfig().set_config(cfg)
    try:
        with report_user_errors():
            train(cfg)
    finally:
        GlobalHydra.instance().clear()
    return tmp_path / output


def losses(out: Path) -> dict[int, float]:
    rows = csv.DictReader(open(out / "csv" / "metrics.csv"))
    return {int(r["step"]): float(r["train/loss"]) for r in rows if r.get("train/loss")}


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["sft_plays", "dpo_plays"])
def test_resumed_fine_tuning_serves_the_same_batches(experiment: str, start_ckpt: Path, tmp_path: Path) -> None:
    common = [
        f"experiment={experiment}", f"init_from={start_ckpt}",
        "data.builtin.per_play=2", "data.builtin.val_per_play=1", "data.batch_size=8",  # ~9 batches an epoch
        "trainer.max_steps=12", "trainer.val_check_interval=6", "trainer.log_every_n_steps=1",
        "model.dropout=0.1",  # dropout draws random numbers: they must repeat after a resume too
        "optim.lr=1e-3", "logger=csv",
        "callbacks.model_checkpoint.every_n_train_steps=6", "callbacks.model_checkpoint.save_top_k=-1",
        "callbacks.model_checkpoint.monitor=null", "callbacks.model_checkpoint.filename='step{step}'",
    ]
    full = run(tmp_path, "full", *common)
    mid = full / "checkpoints" / "step6.ckpt"
    assert torch.load(mid, weights_only=True)["ChatDataModule"] == {
        "batches_served": 6}
    resumed = run(tmp_path, "resumed", *common, f"ckpt_path={mid}")

    a = torch.load(full / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 12
    assert a["ChatDataModule"] == b["ChatDataModule"] == {"batches_served": 12}
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    full_losses, resumed_losses = losses(full), losses(resumed)
    later = [s for s in full_losses if s > 6]
    assert len(later) >= 5 and all(full_losses[s] == resumed_losses[s] for s in later), (full_losses, resumed_losses)
