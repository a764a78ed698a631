"""Callbacks: tokens/s and tokens seen, the fit's totals for result.json, and a progress bar that counts
optimizer steps up to ``max_steps``; and a CSV logger that survives ``ddp_spawn`` (``logger=csv``)."""

from __future__ import annotations

import csv
import time
from typing import Any

import lightning as L
import torch
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.callbacks import ModelCheckpoint as _LightningModelCheckpoint
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger as _LightningCSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


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

    Counts come from batch shapes only, so measuring never forces a device sync (nor a collective): on several ranks
    ``tokens_seen`` is this rank's batch shape × world size, padding included — exact for pretraining's equal
    windows, an upper bound for padded fine-tuning batches. ``tokens_seen`` and ``train_seconds`` are saved in
    checkpoints and continue across a resume.
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


class FitResults(L.Callback):
    """The fit's totals (optimizer steps; tokens seen, training seconds and the curve from ``Throughput``) put
    into ``trainer.callback_metrics`` when the fit ends, for ``run.train`` to read back with ``FitResults.read``.

    Why there: under ``ddp_spawn`` (``trainer=ddp_sim``) the fit runs in child processes, and ``callback_metrics``
    is all Lightning ships back from rank 0 to the parent; the parent's own trainer stays at ``global_step == 0``
    and its callbacks see nothing. Estimating the step from a token count is wrong for variable-length batches
    (fine-tuning: a 2-step SFT run reported 1), so the real values travel instead. In-process runs take the
    same path, so result.json is built one way. Added by ``run.train`` itself, whatever ``callbacks=`` says.
    """

    PREFIX = "fit/"

    def __init__(self, heap: str = "default") -> None:
        self.heap = heap

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # the heap setting run.train applied in its own process, in every process that trains (ddp_spawn's ranks
        # start as fresh interpreters; mallopt is per process)
        if self.heap == "keep":
            from scratchllm.heap import apply_heap

            apply_heap("keep")

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics  # Lightning's own dict: what it sends back from a spawned rank 0
        metrics[self.PREFIX + "global_step"] = torch.tensor(trainer.global_step)
        for callback in trainer.callbacks:
            if isinstance(callback, Throughput):
                # int64, not the logged float32 (exact past 2**24 tokens); the curve as an (n, 4) tensor: a plain
                # tensor is what the transfer's ``torch.load(weights_only=True)`` surely takes
                metrics[self.PREFIX + "tokens_seen"] = torch.tensor(callback.tokens_seen, dtype=torch.int64)
                metrics[self.PREFIX + "train_seconds"] = torch.tensor(callback.train_seconds, dtype=torch.float64)
                metrics[self.PREFIX + "curve"] = torch.tensor(
                    [[p["step"], p["tokens_seen"], p["train_seconds"], p["val_loss"]] for p in callback.curve],
                    dtype=torch.float64).reshape(-1, 4)

    @classmethod
    def read(cls, trainer: L.Trainer) -> dict[str, Any]:
        """The values ``on_fit_end`` left (none when no fit ran): ``global_step``, ``tokens_seen``,
        ``train_seconds`` and ``curve`` (a list of ``{step, tokens_seen, train_seconds, val_loss}``)."""
        metrics = trainer.callback_metrics
        out: dict[str, Any] = {}
        for key in ("global_step", "tokens_seen"):
            if cls.PREFIX + key in metrics:
                out[key] = int(metrics[cls.PREFIX + key])
        if cls.PREFIX + "train_seconds" in metrics:
            out["train_seconds"] = float(metrics[cls.PREFIX + "train_seconds"])
        if cls.PREFIX + "curve" in metrics:
            out["curve"] = [{"step": int(s), "tokens_seen": int(t), "train_seconds": round(float(sec), 2),
                             "val_loss": round(float(v), 4)} for s, t, sec, v in metrics[cls.PREFIX + "curve"].tolist()]
        return out


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


class _HeaderMergingWriter(ExperimentWriter):
    """Lightning's CSV writer, whose header rewrite keeps the columns already in the file.

    Lightning rewrites ``metrics.csv`` under the keys *this writer object* has seen. Under ``ddp_spawn``
    (``trainer=ddp_sim``) the fit's rows are written by a child process; the validation after ``fit`` runs in a new
    child whose writer (a copy of the parent's) has seen none of them, so it rewrote the file with only the
    validation's columns and the fit's rows failed: "dict contains fields not in fieldnames" (whenever the fit
    wrote rows, e.g. ``trainer.log_every_n_steps=1``). Lightning's ``save`` passes ``self.metrics_keys``."""

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            in_file = csv.DictReader(file).fieldnames or []
        # the merged header is also the one the rows appended next are written under (``save`` reads it here)
        self.metrics_keys[:] = sorted(set(fieldnames) | set(in_file))
        super()._rewrite_with_new_header(self.metrics_keys)


class CSVLogger(_LightningCSVLogger):
    """``lightning.pytorch.loggers.CSVLogger`` with ``_HeaderMergingWriter`` (``conf/logger/csv.yaml``)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:  # as Lightning's property, with the writer above
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _HeaderMergingWriter(log_dir=self.log_dir)
        return self._experiment


class ModelCheckpoint(_LightningModelCheckpoint):
    """Lightning's ModelCheckpoint, with ``last.ckpt`` always the run's final step.

    Lightning (2.6) saves ``last`` at each validation and, when training ends, only if it never saved one. A run
    whose ``trainer.max_steps`` is not a multiple of ``val_check_interval`` (300 steps, validation every 250) then
    ended with ``last.ckpt`` at step 250: generate, evaluate and quantize read weights 50 steps old, and resuming the
    finished run trained those 50 steps again. Here the end of training saves ``last`` whenever the final step is
    not the one saved last. The best (top-k) checkpoints are unchanged: they need a validation loss.
    """

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # save_last="link" keeps Lightning's behaviour: its link branch would point last at the stale top-k file
        if self.save_last is True and not trainer.fast_dev_run and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
            return
        super().on_train_end(trainer, pl_module)
