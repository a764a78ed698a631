"""The run's Hydra config for a ``Job``: conf/train.yaml composed with overrides, exactly as the entry point does.

Both loops read the same composed config (model, optimizer, schedule, clipping, precision, data), so the plain
loop cannot drift from what ``scratchllm.training.run.train`` would train. What changes per loop:

- every loop: no validation (``limit_val_batches=0``, ``validate=false``), no end-of-run sample;
- ``lightning``: no logger, callbacks, checkpointing, progress bar or model summary — the bare training loop;
- ``lightning-default``: the template's defaults (TensorBoard logger; checkpoint, throughput and progress-bar
  callbacks) — what a user pays without changing anything. The checkpoint is only written after the last step.

With ``data=shards`` the tokenizer follows the preset's vocabulary: char for the small presets (the model then
takes the corpus's own character count, as run.train does), gpt2 for 50257.
"""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from bench.plan import Job
from scratchllm.errors import ConfigError
from scratchllm.model import load_preset
from scratchllm.paths import config_dir

BARE_TRAINER = [
    "callbacks=none",
    "~logger",
    "+trainer.enable_checkpointing=false",
    "+trainer.enable_progress_bar=false",
    "+trainer.enable_model_summary=false",
]


def tokenizer_for(model: str) -> str:
    vocab = load_preset(model).vocab_size
    if vocab <= 256:
        return "char"
    if vocab == 50257:
        return "gpt2"
    raise ConfigError(f"no offline tokenizer has model {model!r}'s vocabulary ({vocab}); use --data random")


def job_overrides(job: Job, run_dir: Path) -> list[str]:
    overrides = [
        f"model={job.model}",
        f"data.batch_size={job.batch}",
        f"precision={job.precision}",
        f"compile={str(job.compile).lower()}",
        f"optim.fused={str(job.optimizer == 'fused').lower()}",
        f"model.attention={job.attention}",
        f"trainer.max_steps={job.warmup + job.steps}",
        "trainer.limit_val_batches=0",
        "validate=false",
        "sample.max_new_tokens=0",
        f"seed={job.seed}",
        f"paths.root_dir={run_dir}",
        f"paths.cache_dir={Path(job.cache_dir).resolve()}",
        "threads=null",  # the bench sets torch's threads itself (--threads), per process
    ]
    if job.context:
        overrides.append(f"model.context_length={job.context}")
    if job.device == "cuda":
        overrides.append("trainer=gpu")
    if job.data == "shards":
        overrides.append(f"tokenizer={tokenizer_for(job.model)}")
    if job.loop in ("plain", "lightning"):
        overrides += BARE_TRAINER  # the plain loop reads no trainer options but these; same config either way
    return overrides


def compose_job_config(job: Job, run_dir: Path) -> DictConfig:
    """The composed config, with Hydra's runtime set as the entry point would (so ``${hydra:…}`` resolves)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=job_overrides(job, run_dir), return_hydra_config=True)
    output = str(run_dir / "output")
    with open_dict(cfg):
        cfg.paths.output_dir = output
        cfg.hydra.runtime.output_dir = output
        cfg.hydra.job.num = 0
        if job.data == "random":
            preset = load_preset(job.model)
            cfg.data = OmegaConf.create({
                "_target_": "bench.random_data.RandomTokens",
                "vocab_size": preset.vocab_size,
                "batch_size": job.batch,
                "context_length": job.context or preset.context_length,
                "seed": job.seed,
                "corpus": {},
            })
    HydraConfig().set_config(cfg)
    GlobalHydra.instance().clear()
    return cfg


def auto_defaults(device: str) -> dict[str, object]:
    """What the default training command resolves ``precision``/``compile``/``model.attention=auto`` to on this
    device (training/auto.py, on conf/train.yaml's own defaults: its ``auto`` length and ``compile_min_steps``),
    with the optimizer its ``optim.fused: null`` picks."""
    from scratchllm.training import auto

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["trainer=gpu"] if device == "cuda" else [])
    GlobalHydra.instance().clear()
    decisions = {d.name: d for d in auto.resolve(cfg)}
    return {"precision": decisions["precision"].value, "compile": bool(decisions["compile"].value),
            "attention": decisions["model.attention"].value, "optimizer": "fused",
            "reasons": [d.line() for d in decisions.values()]}
