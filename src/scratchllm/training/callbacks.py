"""Callbacks: tokens/s and tokens seen, and a progress bar that counts optimizer steps up to ``max_steps``."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar


def log_this_step(trainer: L.Trainer) -> bool:
    """Whether step metrics logged now will reach the loggers: Lightning's own test (every ``log_every_n_steps``
    optimizer steps), plus the last step so end-of-run values are current. Per-step values nobody will see are
    worth skipping: each ``self.log`` costs ~2-3 ms of Python on a CPU (Lightning moves its result holder to the
    value's device on every call)."""
    last = trainer.max_steps > 0 and trainer.global_step + 1 >= trainer.max_steps
    connector = getattr(trainer, "_logger_connector", None)  # Lightning's own rule; private, so read defensively
    return bool(getattr(connector, "should_update_logs", True)) or last


class Throughput(L.Callback):
    """Logs ``train/tokens_per_s`` (smoothed, validation time excluded), ``train/tokens_seen`` (all ranks) and
    ``time/train_seconds``: wall-clock seconds spent training so far, validation excluded (compile time and data
    loading included). That last one is the x-axis of time-to-quality: at each validation the callback also
    appends ``{step, tokens_seen, train_seconds, val_loss}`` to ``curve``, which ``run.train`` writes to
    result.json.

    Counts come from batch shapes only, so measuring never forces a device sync. ``tokens_seen`` and
    ``train_seconds`` are saved in checkpoints and continue across a resume.
    """

    def __init__(self, smoothing: float = 0.9) -> None:
        self.smoothing = smoothing
        self.tokens_seen = 0
        self.train_seconds = 0.0
        self.curve: list[dict[str, float]] = []
        self._rate: float | None = None
        self._last: float | None = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if self._last is None:
            self._last = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        tokens = batch["input_ids"].numel() * trainer.world_size
        self.tokens_seen += tokens
        now = time.perf_counter()
        if self._last is not None:
            self.train_seconds += now - self._last
            rate = tokens / max(now - self._last, 1e-9)
            self._rate = rate if self._rate is None else self.smoothing * self._rate + (1 - self.smoothing) * rate
        self._last = now
        if log_this_step(trainer):
            if self._rate is not None:
                pl_module.log("train/tokens_per_s", self._rate, prog_bar=True)
            pl_module.log("train/tokens_seen", float(self.tokens_seen))
            pl_module.log("time/train_seconds", self.train_seconds)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last = None  # do not charge validation time to training throughput

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        val_loss = trainer.callback_metrics.get("val/loss")
        if trainer.sanity_checking or val_loss is None or trainer.state.fn != "fit":
            return
        self.curve.append({
            "step": trainer.global_step,
            "tokens_seen": self.tokens_seen,
            "train_seconds": round(self.train_seconds, 2),
            "val_loss": round(float(val_loss), 4),
        })

    def state_dict(self) -> dict[str, Any]:
        return {"tokens_seen": self.tokens_seen, "train_seconds": self.train_seconds, "curve": list(self.curve)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.tokens_seen = int(state_dict.get("tokens_seen", 0))
        self.train_seconds = float(state_dict.get("train_seconds", 0.0))
        self.curve = list(state_dict.get("curve", []))


class StepProgressBar(TQDMProgressBar):
    """The training bar runs to ``max_steps`` (streamed data has no epoch length) and hides ``v_num``."""

    def _count_steps(self, trainer: L.Trainer) -> None:
        if trainer.max_steps and trainer.max_steps > 0:
            total = trainer.max_steps * trainer.accumulate_grad_batches
            bar = self.train_progress_bar
            bar.reset(total=total)
            # start at the restored step, and count from there: tqdm's rate is (n - initial) / time
            bar.initial = bar.n = bar.last_print_n = trainer.global_step * trainer.accumulate_grad_batches
            bar.set_description("train")

    def on_train_start(self, trainer: L.Trainer, *args: Any) -> None:
        super().on_train_start(trainer, *args)
        self._count_steps(trainer)  # a resumed run starts mid-epoch: no on_train_epoch_start comes

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any) -> None:
        super().on_train_epoch_start(trainer, *args)
        self._count_steps(trainer)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # Lightning sets the bar to batch_idx + 1, the batch within this epoch; after a resume that restarts
        # below the bar's start (``initial``, the restored step) and tqdm showed a negative rate
        # (-1335765.61it/s). Count from the optimizer step instead, like the bar's total.
        accumulate = trainer.accumulate_grad_batches
        n = trainer.global_step * accumulate + (batch_idx + 1) % accumulate
        bar = self.train_progress_bar
        if bar is not None and not bar.disable and self._should_update(n, bar.total):
            bar.n = n
            bar.refresh()
            bar.set_postfix(self.get_metrics(trainer, pl_module))

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics
