"""The Lightning side: ``scratchllm.training.run.train`` itself, with a clock callback added to its config.

Calling ``train(cfg)`` (rather than rebuilding a Trainer here) means the measurement follows the template: the
DataModule, ``GPTLitModule``, callbacks, loggers and Trainer are whatever run.train builds from the config.
``StepClock`` is instantiated by run.train from ``cfg.callbacks`` like any other callback, and writes its
timings to a JSON file when training ends (run.train returns no trainer to read it from).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, open_dict

from bench.timing import StepTimer


class StepClock(L.Callback):
    def __init__(self, path: str, warmup: int, steps: int, device: str = "cpu", profile_path: str | None = None):
        self.path = path
        self.timer = StepTimer(warmup, steps, device, profile_path)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.timer.begin()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        self.timer.step_end(loss)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        summary = {**self.timer.summary(), "model_config": pl_module.config.to_dict()}
        Path(self.path).write_text(json.dumps(summary))


def train_lightning(cfg: DictConfig, clock_path: Path, warmup: int, steps: int, device: str = "cpu",
                    profile_path: str | None = None) -> dict[str, Any]:
    """Run ``train(cfg)`` with a ``StepClock``; return the clock's summary."""
    from scratchllm.training.run import train

    with open_dict(cfg):
        if cfg.get("callbacks") is None:
            cfg.callbacks = {}
        # First in the dict, so it is the first callback Lightning calls in each hook.
        cfg.callbacks = {"bench_clock": {"_target_": "bench.lightning_loop.StepClock", "path": str(clock_path),
                                         "warmup": warmup, "steps": steps, "device": device,
                                         "profile_path": profile_path},
                         **cfg.callbacks}
    train(cfg)
    return json.loads(Path(clock_path).read_text())
