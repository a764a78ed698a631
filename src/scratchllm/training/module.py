"""The LightningModule: a plain-torch ``GPT`` trained by an objective, with the optimizer and schedule it is given.

Everything Lightning lives here and in ``callbacks.py``; the model itself (``scratchllm.model``) never imports
Lightning, so a trained ``module.model`` is an ordinary ``nn.Module``. The module knows no particular loss: an
objective (``scratchllm.training.objectives``, picked by ``objective=``) turns each batch dict into a loss and
metrics; the optimizer and schedule arrive as configs of ``_partial_`` targets (``optim=``, ``scheduler=``), so
their defaults live in conf/ alone.

Validation values are means weighted by what the objective says they average over (tokens for the language-model
loss). We track them with torchmetrics ``MeanMetric`` (exact across batches and DDP ranks) and exponentiate the
mean token NLL once per validation for perplexity, rather than ``torchmetrics.text.Perplexity``, which softmaxes a
full (B, T, V) copy of the logits — gigabytes at a 50k vocabulary — and overflows to ``inf`` when one probability
underflows.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import lightning as L
import torch
from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy, SingleDeviceStrategy
from torchmetrics.aggregation import MeanMetric

from scratchllm import checkpoint as ckpt_lib
from scratchllm.errors import CheckpointError
from scratchllm.model import GPT, ModelConfig
from scratchllm.training.callbacks import log_this_step

# Fields that may differ between a checkpoint and the config it is resumed or loaded with.
_SHAPE_NEUTRAL_FIELDS = {"name", "dropout", "attention"}


# What a checkpoint written before objectives, optimizers and schedules were config targets implied.
_LEGACY_TARGETS = {
    "optim": "scratchllm.training.optim.build_adamw",
    "scheduler": "scratchllm.training.optim.WarmupCosine",
    "objective": "scratchllm.training.objectives.NextTokenLM",
}


def build_part(kind: str, config: Mapping[str, Any] | None) -> Any:
    """Instantiate a ``_target_`` config (``_partial_`` ones come back as callables). ``total_steps: null`` and
    keys of old checkpoints without a target are read as the defaults they stood for."""
    from hydra.utils import instantiate

    node = dict(config or {})
    if "_target_" not in node:
        node = {"_target_": _LEGACY_TARGETS[kind], **({"_partial_": True} if kind != "objective" else {}), **node}
    return instantiate(node, _convert_="all")


class GPTLitModule(L.LightningModule):
    """Train a ``GPT`` described by ``model`` (a ``ModelConfig`` as a plain dict).

    ``optim``: a ``_partial_`` config called with the model (conf/optim/). ``scheduler``: a ``_partial_`` config
    whose result is an lr multiplier per step (conf/scheduler/); ``total_steps`` null = the trainer's max_steps.
    ``objective``: the objective's config (conf/objective/; null = ``lm``). ``tokenizer_config``: the tokenizer's
    ``to_dict()``, stored in every checkpoint so generation can decode without the data it was trained on.
    """

    def __init__(
        self,
        model: Mapping[str, Any],
        optim: Mapping[str, Any],
        scheduler: Mapping[str, Any],
        tokenizer_config: Mapping[str, Any] | None = None,
        compile: bool = False,
        seed: int = 0,
        objective: Mapping[str, Any] | None = None,
        adapter: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        # Plain containers only: checkpoints must load with torch.load(weights_only=True). logger=False: the run
        # driver logs a compact set itself (a trained BPE's vocabulary is in tokenizer_config).
        self.save_hyperparameters(
            {
                "model": dict(model),
                "optim": dict(optim),
                "scheduler": dict(scheduler),
                "objective": dict(objective) if objective else {"_target_": _LEGACY_TARGETS["objective"]},
                "tokenizer_config": dict(tokenizer_config) if tokenizer_config else None,
                "compile": bool(compile),
                "seed": int(seed),
                "adapter": dict(adapter) if adapter else None,
            },
            logger=False,
        )
        self.config = ModelConfig.from_dict(model)
        self.model = GPT(self.config)
        self.objective = build_part("objective", self.hparams.objective)
        self.reference: GPT | None = None
        if getattr(self.objective, "needs_reference", False):
            # A frozen copy of the starting model (DPO's reference), a submodule so that it moves with the model
            # and is saved in checkpoints: a resumed run compares against the same reference. The run loads the
            # starting weights into both (init_from); from scratch both start as this initialisation.
            self.reference = GPT(self.config)
            self.reference.load_state_dict(self.model.state_dict())
            self.reference.requires_grad_(False)
            self.objective.reference = self.reference
        if adapter:  # before anything sees the parameters: the optimizer takes only the adapter's trainable ones
            from scratchllm.finetune.lora import apply_lora

            apply_lora(self.model, adapter)
        if hasattr(self.objective, "attach"):  # an objective with parameters of its own (a classifier head)
            self.objective.attach(self.model)
        self.val_loss = MeanMetric()
        self.val_metrics = torch.nn.ModuleDict()  # one MeanMetric per metric name the objective reports
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
    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self.objective(self.model, batch)
        self.log("train/loss", out.loss, on_step=True, on_epoch=False, prog_bar=True)
        if out.metrics and log_this_step(self.trainer):
            for name, value in out.metrics.items():
                self.log(f"train/{name}", value, on_step=True, on_epoch=False)
        return out.loss

    def validation_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        out = self.objective(self.model, batch)
        self.val_loss.update(out.loss.detach(), weight=out.weight)
        for name, value in out.metrics.items():
            if name not in self.val_metrics:
                self.val_metrics[name] = MeanMetric().to(self.device)
            self.val_metrics[name].update(value.detach(), weight=out.weight)

    def on_validation_epoch_end(self) -> None:
        if self.val_loss.update_count == 0:
            return
        val_loss = self.val_loss.compute()  # already reduced over DDP ranks
        self.val_loss.reset()
        metrics = {name: metric.compute() for name, metric in self.val_metrics.items()}
        for metric in self.val_metrics.values():
            metric.reset()
        if self.trainer.sanity_checking:
            return
        self.log("val/loss", val_loss, prog_bar=True)
        if getattr(self.objective, "reports_perplexity", False):
            self.log("val/ppl", torch.exp(val_loss))
        for name, value in metrics.items():
            self.log(f"val/{name}", value)
        self.best_val_loss = min(self.best_val_loss, float(val_loss))
        self.log("hp/val_loss", self.best_val_loss)  # the HPARAMS-tab metric: best validation loss so far

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        """Clip by global norm and log the pre-clip norm (the number to watch for loss spikes) with one pass over
        the gradients (clip_grad_norm_ returns it), where the old hook computed it once more just for logging.

        Also what lets ``optim.fused=true`` train under ``bf16-mixed``: Lightning's mixed-precision plugin refuses
        to clip whenever the optimizer can unscale gradients itself (fused AdamW), because under ``16-mixed`` they
        still carry the loss scale. bf16 has no loss scale, so clipping here is exact, by norm or by value (fused
        AdamW is the default on CPU and CUDA). FSDP clips through its wrapped root module (which reduces the norm
        over shards); ``16-mixed`` keeps Lightning's own path."""
        log_norm = log_this_step(self.trainer)
        params = [p for p in self.model.parameters() if p.grad is not None]
        own_path = (bool(gradient_clip_val) and str(self.trainer.precision) != "16-mixed"
                    and isinstance(self.trainer.strategy, (SingleDeviceStrategy, DDPStrategy)))
        if own_path and gradient_clip_algorithm in (None, "norm"):
            norm = torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)
        elif bool(gradient_clip_val) and gradient_clip_algorithm in (None, "norm") and isinstance(
            self.trainer.strategy, FSDPStrategy
        ):
            # Lightning's FSDP precision plugin refuses norm clipping: the wrapped root module knows every shard
            # and computes the global norm across ranks itself.
            norm = self.trainer.strategy.model.clip_grad_norm_(gradient_clip_val)
        else:  # by value, or no clipping: the pre-clip norm is computed for the log only
            norm = torch.nn.utils.get_total_norm([p.grad for p in params]) if log_norm and params else None
            if own_path:  # gradient_clip_algorithm == "value"
                torch.nn.utils.clip_grad_value_(params, gradient_clip_val)
            else:
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
        optimizer = build_part("optim", self.hparams.optim)(self.model)
        scheduler = dict(self.hparams.scheduler)
        if not scheduler.get("total_steps"):
            scheduler["total_steps"] = self.trainer.max_steps
        schedule = build_part("scheduler", scheduler)()
        lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": lr_scheduler, "interval": "step"}}

    # ---------------------------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # max_steps: what `trainer.max_steps=auto` resolved to, so a resume keeps the run's length (run.py)
        checkpoint["scratchllm"] = {"micro_batches": self.micro_batches, "best_val_loss": self.best_val_loss,
                                    "max_steps": int(self.trainer.max_steps)}
        objective = {"name": getattr(self.objective, "name", type(self.objective).__name__),
                     "config": dict(self.hparams.objective)}
        ckpt_lib.stamp(checkpoint, ckpt_lib.CheckpointMeta(
            format=ckpt_lib.FORMAT, model=self.config.to_dict(), tokenizer=self.hparams.tokenizer_config,
            objective=objective, adapters=self.hparams.get("adapter")))

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_same_shape(ModelConfig.from_dict(ckpt_lib.describe(checkpoint).model), self.config)
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
