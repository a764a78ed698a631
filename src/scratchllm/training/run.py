"""One training run from a composed Hydra config: data → tokenizer → model → Trainer.fit → validate → sample.

The entry point (``scratchllm.train``) only composes the config and calls ``train(cfg)``; tests call it too.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.loggers import TensorBoardLogger
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from scratchllm.errors import CheckpointError, ConfigError, NoExampleFits
from scratchllm.heap import apply_heap
from scratchllm.model import ModelConfig, param_report
from scratchllm.training import auto
from scratchllm.training.callbacks import FitResults
from scratchllm.training.checkpoint_io import SafeCheckpointIO
from scratchllm.threads import apply_threads
from scratchllm.training.module import GPTLitModule
from scratchllm.training.summary import run_summary

log = logging.getLogger(__name__)

# Keys of a data config that feed interpolations (``corpus.path: ${data.path}``) rather than the DataModule.
_DATA_SHORTCUT_KEYS = ("path",)


def build_datamodule(data_cfg: DictConfig) -> L.LightningDataModule:
    container = OmegaConf.to_container(data_cfg, resolve=True)
    assert isinstance(container, dict)
    for key in _DATA_SHORTCUT_KEYS:
        container.pop(key, None)
    return instantiate(container, _convert_="all")


def build_model_config(model_cfg: DictConfig, vocab_size: int) -> ModelConfig:
    """The configured model, with its vocabulary taken from the tokenizer (the one source of truth)."""
    fields = OmegaConf.to_container(model_cfg, resolve=True)
    assert isinstance(fields, dict)
    if fields.get("vocab_size") not in (None, vocab_size):
        log.info("model.vocab_size %s replaced by the tokenizer's %s", fields.get("vocab_size"), vocab_size)
    return ModelConfig.from_dict({**fields, "vocab_size": vocab_size})


def _resume_target(ckpt_path: str | None, log_dir: str | Path) -> tuple[str | None, int | None]:
    """The checkpoint to resume from and the ``max_steps`` it was trained towards (None when it does not say: a
    checkpoint older than the record). ``None`` → a fresh run; ``last`` → the newest ``last.ckpt`` under the log
    folder; else a checkpoint file that must exist (the rule generation uses too, without Lightning)."""
    if ckpt_path in (None, "", "null"):
        return None, None
    from scratchllm import checkpoint
    from scratchllm.training import sharded

    path = checkpoint.resolve(ckpt_path, log_dir)
    if sharded.is_sharded(path):  # an FSDP run's folder (state_dict_type=sharded): its metadata file
        loaded = sharded.load_meta(path)
    elif not path.is_file():
        raise CheckpointError(f"ckpt_path={ckpt_path} is not a checkpoint file; resume from a .ckpt file or last")
    else:  # a look at its structure: one-line errors before Lightning starts
        loaded = checkpoint.load(path, verify=False, mmap=True)
    checkpoint.describe(loaded, path)
    log.info("resuming from %s", path)
    return str(path), _recorded_max_steps(loaded)


def _recorded_max_steps(loaded: dict[str, Any]) -> int | None:
    """``trainer.max_steps`` of the run that wrote a checkpoint: recorded by the module, else (older files) the
    schedule's resolved ``total_steps``."""
    steps = (loaded.get("scratchllm") or {}).get("max_steps")
    if steps is None:
        hparams = loaded.get("hyper_parameters") or {}
        scheduler = hparams.get("scheduler") if isinstance(hparams, dict) else None
        steps = scheduler.get("total_steps") if isinstance(scheduler, dict) else None
    return steps if isinstance(steps, int) and steps > 0 else None


def _settings(node: DictConfig) -> dict[str, Any]:
    """A config node's values without Hydra's ``_target_``/``_partial_`` keys (what HPARAMS should compare)."""
    values = OmegaConf.to_container(node, resolve=True)
    assert isinstance(values, dict)
    return {k: v for k, v in values.items() if not str(k).startswith("_")}


def _hparams_for_logging(cfg: DictConfig, model_config: ModelConfig, tokenizer_name: str) -> dict[str, Any]:
    trainer = cfg.trainer
    return {
        "model": model_config.to_dict(),
        "params": param_report(model_config).total,
        "tokenizer": tokenizer_name,
        "optim": _settings(cfg.optim),
        "scheduler": _settings(cfg.scheduler),
        "objective": str(cfg.objective.get("_target_", "")).rsplit(".", 1)[-1],
        "data": {"batch_size": cfg.data.batch_size, "corpus": str((cfg.data.get("corpus") or {}).get("_target_", ""))},
        "trainer": {
            "precision": str(trainer.get("precision")),
            "max_steps": trainer.get("max_steps"),
            "accumulate_grad_batches": trainer.get("accumulate_grad_batches"),
            "gradient_clip_val": trainer.get("gradient_clip_val"),
        },
        "seed": cfg.seed,
        "compile": cfg.compile,
        "heap": cfg.get("heap"),
    }


def _start_model(cfg: DictConfig, datamodule: L.LightningDataModule) -> torch.nn.Module | None:
    """``init_from=``: the model to start from (its weights replace the fresh init), None for a fresh run.

    Its tokenizer comes with it: a data module that can take one (``use_tokenizer``: the fine-tuning data) gets
    it; shard data was tokenized already, so it must have been tokenized with the same tokenizer."""
    spec = cfg.get("init_from")
    if spec in (None, "", "null"):
        return None
    from scratchllm.finetune.start import load_start

    model, tokenizer = load_start(spec, cfg.paths.log_dir)
    if hasattr(datamodule, "use_tokenizer"):
        datamodule.use_tokenizer(tokenizer)
        if getattr(datamodule, "context_length", 0) > model.config.context_length:
            log.info("data.context_length %s cut to the model's %s", datamodule.context_length,
                     model.config.context_length)
            # the advice if no example fits: raising data.context_length cannot help then, a longer model can
            datamodule.context_cut = (f"data.context_length={datamodule.context_length} was cut to "
                                      f"{model.config.context_length}, the context_length of init_from={spec}'s "
                                      f"model: start from a model trained with model.context_length="
                                      f"{datamodule.context_length}")
            datamodule.context_length = model.config.context_length
    else:
        datamodule.setup("fit")
        if datamodule.tokenizer.to_dict() != tokenizer.to_dict():
            raise ConfigError(f"init_from={spec} was trained with the {tokenizer.name} tokenizer but the data is "
                              f"tokenized with {datamodule.tokenizer.name}; set tokenizer= to the model's")
    log.info("starting from %s (%s)", spec, model.config.name)
    return model


def _objective_config(cfg: DictConfig, datamodule: L.LightningDataModule) -> dict[str, Any]:
    """The objective's config; an objective with ``labels: null`` gets the data's labels (classification)."""
    objective = OmegaConf.to_container(cfg.objective, resolve=True)
    assert isinstance(objective, dict)
    if "labels" in objective and not objective["labels"]:
        objective["labels"] = list(getattr(datamodule, "labels", None) or [])
    return objective


def _instantiate_dict(group: DictConfig | None) -> list[Any]:
    if not group:
        return []
    return [instantiate(node) for node in group.values() if isinstance(node, DictConfig) and "_target_" in node]


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit, validate and sample; returns the run's summary (also written to ``<output_dir>/result.json``)."""
    start = time.perf_counter()
    threads = apply_threads(cfg.get("threads"))
    if threads.threads:
        log.info("torch threads: %d (%s)", threads.threads, threads.reason)
    # before the first step allocates: freed activations stay for the next (FitResults repeats it in spawned ranks)
    heap = apply_heap(cfg.get("heap"), auto.device_kind(cfg.trainer.get("accelerator")))
    log.info("fast path: %s", heap.line())
    with open_dict(cfg):
        cfg.heap = heap.value  # the run's config records what ran, as for the other auto settings
    # `last` = the newest last.ckpt of this task's runs (logs/train/…), not of every task under logs/
    ckpt_path, resumed_steps = _resume_target(cfg.get("ckpt_path"), Path(cfg.paths.log_dir) / cfg.task_name)
    # precision / compile / attention / max_steps `auto` → this machine's values (a resume keeps its length)
    fast_path = auto.resolve(cfg, resumed_steps)
    for decision in fast_path:  # logged (console and train.log) beside the other start-up facts, not on stderr
        if decision.reason != "as configured":
            log.info("fast path: %s", decision.line())
    if not cfg.trainer.get("max_steps") or cfg.trainer.max_steps <= 0:
        raise ConfigError("trainer.max_steps must be a positive number of optimizer steps (the data streams)")
    L.seed_everything(cfg.seed, workers=True)

    datamodule = build_datamodule(cfg.data)
    starting = _start_model(cfg, datamodule)
    datamodule.prepare_data()
    try:
        datamodule.setup("fit")
    except NoExampleFits as err:
        if getattr(datamodule, "context_cut", None):  # raising data.context_length cannot help: say what can
            raise NoExampleFits(err.split, err.context_length, fix=datamodule.context_cut) from None
        raise
    tokenizer = datamodule.tokenizer
    if starting is not None:
        from scratchllm.finetune.start import grow_to

        model_config = grow_to(starting, tokenizer).config  # room for the special tokens the data added
        # the attention path is this run's choice (auto.resolve), not the starting run's: it holds no weights
        model_config = dataclasses.replace(model_config, attention=cfg.model.attention)
    else:
        model_config = build_model_config(cfg.model, tokenizer.vocab_size)
    module = GPTLitModule(
        model=model_config.to_dict(),
        optim=OmegaConf.to_container(cfg.optim, resolve=True),
        scheduler=OmegaConf.to_container(cfg.scheduler, resolve=True),
        objective=_objective_config(cfg, datamodule),
        tokenizer_config=tokenizer.to_dict(),
        compile=cfg.compile,
        seed=cfg.seed,
        adapter=OmegaConf.to_container(cfg.adapter, resolve=True) if cfg.get("adapter") else None,
    )
    if starting is not None:
        # strict=False for adapter layers only: the starting weights hold none (they start as LoRA's init)
        missing, unexpected = module.model.load_state_dict(starting.state_dict(), strict=False)
        assert not unexpected and all(".lora_" in k or k.startswith("classifier.") for k in missing), missing
        if module.reference is not None:
            module.reference.load_state_dict(starting.state_dict())
    report = param_report(model_config)
    log.info("model %s: %s parameters (%s non-embedding)", model_config.name, f"{report.total:,}",
             f"{report.non_embedding:,}")

    loggers = _instantiate_dict(cfg.get("logger"))
    # FitResults: the fit's real step count etc. for result.json, also from ddp_spawn's child processes
    callbacks = [*_instantiate_dict(cfg.get("callbacks")), FitResults(heap=heap.value)]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False,
                                     plugins=[SafeCheckpointIO()])
    hparams = _hparams_for_logging(cfg, model_config, tokenizer.name)
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            # One HPARAMS entry per run whose metric is the real hp/val_loss logged later (no placeholder).
            logger.log_hyperparams(hparams, {"hp/val_loss": float("nan")})
        else:
            logger.log_hyperparams(hparams)

    result: dict[str, Any] = {"model": model_config.name, "params": report.total, "tokenizer": tokenizer.name,
                              "threads": torch.get_num_threads(),
                              "fast_path": {**{d.name: d.value for d in fast_path}, "heap": heap.value}}
    if cfg.get("adapter") or hasattr(module.objective, "attach"):  # only part of the model trains
        result["trainable_params"] = sum(p.numel() for p in module.model.parameters() if p.requires_grad)
    fit_start = time.perf_counter()
    if cfg.get("train", True):
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        if ckpt_path and module.restored_step is not None and trainer.global_step <= module.restored_step:
            print(f"note: nothing to train: {ckpt_path} is already at step {module.restored_step} and "
                  f"trainer.max_steps={cfg.trainer.max_steps}; to train on, raise it (e.g. "
                  f"trainer.max_steps={module.restored_step + cfg.trainer.max_steps})", file=sys.stderr, flush=True)
    result["fit_seconds"] = round(time.perf_counter() - fit_start, 2)
    # from FitResults, not this process's trainer: under ddp_spawn the fit ran in child processes (the step count
    # was once estimated here from tokens, wrong for variable-length fine-tuning batches)
    fit = FitResults.read(trainer)
    if fit.get("global_step", 0) > trainer.fit_loop.epoch_loop._batches_that_stepped:
        # ddp_spawn: the fit ran in child processes and this trainer's loop never stepped; the final validation
        # below would be logged at step 0. Lightning logs at this counter (private, pinned lightning version).
        trainer.fit_loop.epoch_loop._batches_that_stepped = fit["global_step"]
    result["global_step"] = fit.get("global_step", trainer.global_step)
    if "tokens_seen" in fit:
        result["tokens_seen"] = fit["tokens_seen"]
    if "train_seconds" in fit:
        result["train_seconds"] = round(fit["train_seconds"], 2)
        if fit["curve"]:
            result["curve"] = fit["curve"]  # validation loss against training time (time-to-quality)
        if result["train_seconds"] > 0:
            # both totals carry over a resume, so this is the run's whole average (validation excluded)
            result["tokens_per_s"] = round(result["tokens_seen"] / result["train_seconds"])

    if cfg.get("validate", True) and not trainer.fast_dev_run:
        metrics = trainer.validate(module, datamodule=datamodule, verbose=False)
        if metrics:
            result["val_loss"] = float(metrics[0]["val/loss"])
            if "val/ppl" in metrics[0]:
                result["val_ppl"] = float(metrics[0]["val/ppl"])
    checkpoint_cb = trainer.checkpoint_callback
    if checkpoint_cb is not None:  # a run too short to validate has a last checkpoint and no best one
        for key, path in (("best_checkpoint", "best_model_path"), ("last_checkpoint", "last_model_path")):
            if getattr(checkpoint_cb, path, ""):
                result[key] = getattr(checkpoint_cb, path)

    if cfg.sample.max_new_tokens > 0:
        from scratchllm.training.strategies import sampling_model

        sampler = sampling_model(trainer, module)  # FSDP: the full weights gathered onto rank 0 (every rank joins)
    if trainer.is_global_zero and cfg.sample.max_new_tokens > 0:
        result["sample"] = sample_text(sampler, tokenizer, cfg.sample)
        print("\n----- sample -----\n" + result["sample"] + "\n------------------", flush=True)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                # TensorBoard renders text as Markdown: a code block keeps the sample's lines and spaces
                logger.experiment.add_text("sample", "```\n" + result["sample"] + "\n```", trainer.global_step)
                logger.experiment.flush()

    result["wall_seconds"] = round(time.perf_counter() - start, 2)
    if trainer.is_global_zero:
        out = Path(cfg.paths.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        if cfg.get("adapter"):
            from scratchllm.finetune.lora import save_adapter

            result["adapter"] = str(save_adapter(module.model, out / "adapter"))
        (out / "result.json").write_text(json.dumps(result, indent=2))
        print(run_summary(result, out), flush=True)
        summary = {k: v for k, v in result.items() if k not in ("sample", "curve")}
        print("result: " + json.dumps(summary), flush=True)
    from scratchllm.training.strategies import close_process_group

    close_process_group()  # only on success: after an error a barrier would wait for ranks that are gone
    return result


def sample_text(module: GPTLitModule | torch.nn.Module, tokenizer: Any, sample_cfg: DictConfig) -> str:
    """Decode a short continuation of ``sample.prompt`` with the generation module (KV cache, top-k); ``module``:
    the LightningModule or the GPT itself."""
    from scratchllm.generation import SamplingConfig, generate

    prompt = str(sample_cfg.prompt)
    prompt_ids = tokenizer.encode(prompt) if prompt else []
    sampling = SamplingConfig.from_mapping(OmegaConf.to_container(sample_cfg, resolve=True))
    new_ids = generate(getattr(module, "model", module), prompt_ids, int(sample_cfg.max_new_tokens), sampling=sampling,
                       eot_id=tokenizer.eot_id)
    return prompt + tokenizer.decode(new_ids)
