"""The same training as ``run.train``, written as a plain PyTorch loop — the baseline the Trainer is measured against.

Built from the same composed config and the same building blocks, in the same order, so that with the same seed
it starts from the same weights, reads the same batches and (in fp32) produces the same losses as the Trainer
(a test checks this):

- data: ``build_datamodule(cfg.data)`` — the ShardDataModule's train stream (or ``RandomTokens``);
- model: ``GPT(build_model_config(...))`` after ``torch.manual_seed(cfg.seed)``, compiled in place if asked;
- optimizer and schedule: ``cfg.optim`` / ``cfg.scheduler`` built as the module builds them (AdamW, fused or
  foreach; ``WarmupCosine`` in ``LambdaLR``),
  stepped per optimizer step; clipping: ``clip_grad_norm_`` at ``trainer.gradient_clip_val``;
- precision as Lightning applies it: ``bf16-mixed`` = autocast around the forward (cache off, like Lightning's
  plugin, so both do the same casts); ``bf16-true`` = weights cast to bf16 and bf16 as the default dtype during
  the forward; ``32-true`` = nothing.

What it leaves out is exactly the template's per-step machinery: hooks, ``self.log``, the per-batch reseed, the
separate grad-norm pass for logging, progress bars, loggers.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from omegaconf import DictConfig, OmegaConf

from bench.timing import StepTimer
from scratchllm.model import GPT
from scratchllm.training.module import build_part
from scratchllm.training.run import build_datamodule, build_model_config


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def forward_context(precision: str, device: str):
    if precision == "bf16-mixed":
        return torch.autocast(device, dtype=torch.bfloat16, cache_enabled=False)
    if precision == "bf16-true":
        return _default_dtype(torch.bfloat16)
    if precision == "32-true":
        return contextlib.nullcontext()
    raise ValueError(f"precision {precision!r} is not benchmarked (32-true, bf16-mixed, bf16-true)")


def train_plain(cfg: DictConfig, timer: StepTimer, device: str = "cpu") -> GPT:
    """Train ``cfg.trainer.max_steps`` steps, calling ``timer`` at the start and after every optimizer step."""
    torch.manual_seed(cfg.seed)
    datamodule = build_datamodule(cfg.data)
    if hasattr(datamodule, "prepare_data"):
        datamodule.prepare_data()
    datamodule.setup("fit")
    model_config = build_model_config(cfg.model, datamodule.tokenizer.vocab_size)
    model = GPT(model_config)
    precision = str(cfg.trainer.precision)
    if precision == "bf16-true":
        model = model.to(torch.bfloat16)
    model = model.to(device)
    if cfg.compile:
        model.compile()
    model.train()

    # the same optimizer and schedule the template builds: the configs are _partial_ targets (conf/optim/, scheduler/)
    max_steps = int(cfg.trainer.max_steps)
    optimizer = build_part("optim", OmegaConf.to_container(cfg.optim, resolve=True))(model)
    schedule = build_part("scheduler", {**OmegaConf.to_container(cfg.scheduler, resolve=True),
                                        "total_steps": int(cfg.scheduler.get("total_steps") or max_steps)})()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    clip = cfg.trainer.get("gradient_clip_val")

    batches = iter(datamodule.train_dataloader())
    timer.begin()
    for _ in range(max_steps):
        batch = next(batches)
        x = batch["input_ids"].to(device, non_blocking=True)
        y = batch["labels"].to(device, non_blocking=True)
        with forward_context(precision, device):
            _, loss = model(x, y)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), float(clip))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        timer.step_end(loss)
    return model
