"""The LightningModule: next-token cross-entropy on a plain-torch ``GPT``, AdamW, warmup + cosine per step.

Everything Lightning lives here and in ``callbacks.py``; the model itself (``scratchllm.model``) never imports
Lightning, so a trained ``module.model`` is an ordinary ``nn.Module``.

Validation perplexity is exp(mean token negative log-likelihood). We track that mean with a torchmetrics
``MeanMetric`` weighted by token counts (exact across batches and DDP ranks) and exponentiate once per validation,
rather than ``torchmetrics.text.Perplexity``, which softmaxes a full (B, T, V) copy of the logits — gigabytes at a
50k vocabulary — and overflows to ``inf`` when one probability underflows.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import lightning as L
import torch
from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy, SingleDeviceStrategy
from torchmetrics.aggregation import MeanMetric

from scratchllm.errors import CheckpointError
from scratchllm.model import GPT, ModelConfig
from scratchllm.model.gpt import IGNORE_INDEX
from scratchllm.training.callbacks import log_this_step
from scratchllm.training.optim import WarmupCosine, build_adamw

# Fields that may differ between a checkpoint and the config it is resumed or loaded with.
_SHAPE_NEUTRAL_FIELDS = {"name", "dropout", "attention"}


class GPTLitModule(L.LightningModule):
    """Train a ``GPT`` described by ``model`` (a ``ModelConfig`` as a plain dict).

    ``optim``: AdamW settings (lr, weight_decay, betas, eps, fused). ``scheduler``: warmup_steps, min_lr_ratio,
    decay and total_steps (the trainer's max_steps). ``tokenizer_config``: the tokenizer's ``to_dict()``, stored
    in every checkpoint so generation can decode without the data it was trained on.
    """

    def __init__(
        self,
        model: Mapping[str, Any],
        optim: Mapping[str, Any],
        scheduler: Mapping[str, Any],
        tokenizer_config: Mapping[str, Any] | None = None,
        compile: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        # Plain containers only: checkpoints must load with torch.load(weights_only=True). logger=False: the run
        # driver logs a compact set itself (a trained BPE's vocabulary is in tokenizer_config).
        self.save_hyperparameters(
            {
                "model": dict(model),
                "optim": dict(optim),
                "scheduler": dict(scheduler),
                "tokenizer_config": dict(tokenizer_config) if tokenizer_config else None,
                "compile": bool(compile),
                "seed": int(seed),
            },
            logger=False,
        )
        self.config = ModelConfig.from_dict(model)
        self.model = GPT(self.config)
        self.val_nll = MeanMetric()
        self.best_val_loss = math.inf
        self.micro_batches = 0  # training batches consumed (all accumulation micro-batches), saved in checkpoints
        self.restored_step: int | None = None  # the optimizer step a resumed checkpoint was at

    # ------------------------------------------------------------------------------------------- model
    def configure_model(self) -> None:
        # Compile in place: parameter names (and so checkpoint keys) stay free of ``_orig_mod.``.
        if self.hparams.compile and not getattr(self, "_compiled", False):
            self.model.compile()
            self._compiled = True

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        return self.model(idx, targets)

    # ----------------------------------------------------------------------------------------- steps
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        _, loss = self.model(x, y)
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        _, loss = self.model(x, y)
        n_tokens = (y != IGNORE_INDEX).sum()
        self.val_nll.update(loss.detach(), weight=n_tokens)

    def on_validation_epoch_end(self) -> None:
        if self.val_nll.update_count == 0:
            return
        val_loss = self.val_nll.compute()  # already reduced over DDP ranks
        self.val_nll.reset()
        if self.trainer.sanity_checking:
            return
        self.log("val/loss", val_loss, prog_bar=True)
        self.log("val/ppl", torch.exp(val_loss))
        self.best_val_loss = min(self.best_val_loss, float(val_loss))
        self.log("hp/val_loss", self.best_val_loss)  # the HPARAMS-tab metric: best validation loss so far

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        """Clip by global norm and log the pre-clip norm (the number to watch for loss spikes) with one pass over
        the gradients (clip_grad_norm_ returns it), where the old hook computed it once more just for logging.

        Also what lets ``optim.fused=true`` train under ``bf16-mixed``: Lightning's mixed-precision plugin refuses
        to clip whenever the optimizer can unscale gradients itself (fused AdamW), because under ``16-mixed`` they
        still carry the loss scale. bf16 has no loss scale, so clipping here is exact. FSDP clips through its
        wrapped root module (which reduces the norm over shards); ``16-mixed`` and clipping by value keep
        Lightning's own path."""
        log_norm = log_this_step(self.trainer)
        params = [p for p in self.model.parameters() if p.grad is not None]
        own_path = (bool(gradient_clip_val) and str(self.trainer.precision) != "16-mixed"
                    and gradient_clip_algorithm in (None, "norm")
                    and isinstance(self.trainer.strategy, (SingleDeviceStrategy, DDPStrategy)))
        if own_path:
            norm = torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)
        elif bool(gradient_clip_val) and gradient_clip_algorithm in (None, "norm") and isinstance(
            self.trainer.strategy, FSDPStrategy
        ):
            # Lightning's FSDP precision plugin refuses norm clipping: the wrapped root module knows every shard
            # and computes the global norm across ranks itself.
            norm = self.trainer.strategy.model.clip_grad_norm_(gradient_clip_val)
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in params]) if log_norm and params else None
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
        if log_norm and norm is not None:
            self.log("train/grad_norm", norm)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Dropout draws from the global RNG, which Lightning and DataLoaders also draw from at moments that
        # differ between an uninterrupted and a resumed run. Seeding it from (seed, rank, batch number) makes
        # every batch's random numbers a function of where the run is, so resume is exact.
        # Not torch.manual_seed: while CUDA is not initialised (every CPU run) it queues a lazy CUDA seed and
        # formats the whole call stack for it, 0.5-4 ms per step; the generators dropout uses are seeded directly.
        seed = (self.hparams.seed * 1_000_003 + self.global_rank * 7_919 + self.micro_batches) % 2**63
        torch.random.default_generator.manual_seed(seed)
        if self.device.type == "cuda":
            torch.cuda.manual_seed(seed)
        self.micro_batches += 1
        scheduler = self.lr_schedulers()
        if scheduler is not None and log_this_step(self.trainer):
            self.log("train/lr", scheduler.get_last_lr()[0])

    # ------------------------------------------------------------------------------------ optimiser
    def configure_optimizers(self):
        o = self.hparams.optim
        optimizer = build_adamw(
            self.model,
            lr=o["lr"],
            weight_decay=o.get("weight_decay", 0.1),
            betas=o.get("betas", (0.9, 0.95)),
            eps=o.get("eps", 1e-8),
            fused=o.get("fused"),
        )
        s = self.hparams.scheduler
        total = s.get("total_steps") or self.trainer.max_steps
        schedule = WarmupCosine(
            warmup_steps=int(s.get("warmup_steps", 0)),
            total_steps=int(total),
            min_lr_ratio=float(s.get("min_lr_ratio", 0.1)),
            decay=str(s.get("decay", "cosine")),
        )
        lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": lr_scheduler, "interval": "step"}}

    # ---------------------------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["scratchllm"] = {"micro_batches": self.micro_batches, "best_val_loss": self.best_val_loss}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = (checkpoint.get("hyper_parameters") or {}).get("model")
        if saved is not None:
            check_same_shape(ModelConfig.from_dict(saved), self.config)
        self.restored_step = int(checkpoint.get("global_step", 0))
        state = checkpoint.get("scratchllm") or {}
        self.micro_batches = int(state.get("micro_batches", 0))
        self.best_val_loss = float(state.get("best_val_loss", math.inf))


def check_same_shape(saved: ModelConfig, wanted: ModelConfig) -> None:
    """Raise ``CheckpointError`` naming every field where a checkpoint's model differs from the configured one."""
    a, b = saved.to_dict(), wanted.to_dict()
    diffs = [f"{k}: checkpoint {a[k]!r} vs config {b[k]!r}" for k in a if k not in _SHAPE_NEUTRAL_FIELDS and a[k] != b[k]]
    if diffs:
        raise CheckpointError(
            "the checkpoint holds a model of another shape ("
            + "; ".join(diffs)
            + "); resume with the same model=/model.* settings or start a new run without ckpt_path"
        )
