"""A plan as Markdown, JSON, and the files that launch it: the training command, torchrun and SLURM scripts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scratchllm.model.presets import load_preset
from scratchllm.planning.recipe import RULES

if TYPE_CHECKING:
    from scratchllm.planning.recipe import Plan

GB = 1e9
# fields the command does not repeat: the tokenizer sets the vocabulary, checkpointing is set apart
NOT_REPEATED = ("name", "vocab_size", "checkpointing")


def _model_overrides(plan: "Plan") -> list[str]:
    """``model=<preset>`` plus the fields where the planned shape differs from it."""
    cfg = plan.shape.config
    base = load_preset(plan.shape.base)
    ours, theirs = cfg.to_dict(), base.to_dict()
    return [f"model={plan.shape.base}"] + [
        f"model.{k}={_value(v)}" for k, v in ours.items() if k not in NOT_REPEATED and v != theirs[k]]


def _value(v: object) -> str:
    return "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)


def train_overrides(plan: "Plan") -> list[str]:
    """The overrides of ``python -m scratchllm.train`` that run this plan (on the data in ``$DATA``)."""
    m = plan.chosen
    strategy = m.strategy if m else "fsdp-full"
    ckpt = m.checkpointing if m else "full"
    sharding = "HYBRID_SHARD" if strategy == "fsdp-hybrid" else "FULL_SHARD"
    trainer = ["trainer=ddp"] if strategy == "ddp" else ["trainer=fsdp", f"trainer.strategy.sharding_strategy={sharding}"]
    if strategy != "ddp":
        # eager: compile=auto would compile a long GPU run, and torch.compile over Lightning's FSDP (one unit per
        # block, with or without activation checkpointing) is not tested here; DDP plans keep compile=auto
        trainer.append("compile=false")
    if plan.accelerator.name == "cpu":
        trainer.append("trainer.accelerator=cpu")
    return [
        *_model_overrides(plan),
        # ++: the presets may not list the field yet; ++ sets it either way
        f"++model.checkpointing={ckpt}",
        "data=shards", "data.path=$DATA", f"data.batch_size={plan.micro_batch}",
        *trainer, f"trainer.num_nodes={plan.nodes}", f"trainer.devices={plan.per_node}",
        f"precision={plan.precision}",
        f"trainer.accumulate_grad_batches={plan.accumulation}", f"trainer.max_steps={plan.steps}",
        f"optim.lr={plan.lr:.3g}", f"scheduler.warmup_steps={plan.warmup_steps}", "scheduler.min_lr_ratio=0.1",
        # every rank must write to the same run folder (the default name is per process)
        "hydra.run.dir=logs/train/runs/$RUN_ID",
    ]


def train_command(plan: "Plan") -> str:
    args = train_overrides(plan)
    lines = [" ".join(args[i:i + 4]) for i in range(0, len(args), 4)]
    return "python -m scratchllm.train " + " \\\n    ".join(lines)


def torchrun_script(plan: "Plan") -> str:
    return f"""#!/usr/bin/env bash
# Run on each of the {plan.nodes} node(s), with NODE_RANK=0..{plan.nodes - 1} and MASTER_ADDR = node 0's address:
#   DATA=/data/shards MASTER_ADDR=10.0.0.1 NODE_RANK=0 RUN_ID=myrun bash launch_torchrun.sh
set -euo pipefail
: "${{DATA:?set DATA to the prepared shards folder}}"
export RUN_ID="${{RUN_ID:-$(date +%Y-%m-%d_%H-%M-%S)}}"
torchrun --nnodes={plan.nodes} --nproc-per-node={plan.per_node} --node-rank="${{NODE_RANK:-0}}" \\
    --rdzv-backend=c10d --rdzv-endpoint="${{MASTER_ADDR:-127.0.0.1}}:${{MASTER_PORT:-29500}}" --rdzv-id="$RUN_ID" \\
    -m scratchllm.train {' '.join(train_overrides(plan))}
"""


def slurm_script(plan: "Plan") -> str:
    gpus = "" if plan.accelerator.name == "cpu" else f"#SBATCH --gpus-per-node={plan.per_node}\n"
    return f"""#!/usr/bin/env bash
# sbatch --export=ALL,DATA=/data/shards launch_slurm.sbatch
# One task per device: Lightning reads SLURM's variables (SLURMEnvironment), no torchrun needed.
#SBATCH --job-name=scratchllm-{plan.shape.config.name}
#SBATCH --nodes={plan.nodes}
#SBATCH --ntasks-per-node={plan.per_node}
{gpus}#SBATCH --time={max(1, round(plan.hours + 0.5)):d}:00:00
set -euo pipefail
: "${{DATA:?set DATA to the prepared shards folder}}"
export RUN_ID="${{RUN_ID:-slurm-$SLURM_JOB_ID}}"
srun python -m scratchllm.train {' '.join(train_overrides(plan))}
"""


def _mem_row(m: Any, usable: float) -> str:
    fits = "yes" if m.total <= usable else "no"
    return (f"| {m.strategy} | {m.checkpointing} | {m.weights / GB:.2f} | {m.grads / GB:.2f} | {m.optimizer / GB:.2f} "
            f"| {m.activations / GB:.2f} | {m.buffers / GB:.2f} | {m.total / GB:.2f} | {fits} |")


def plan_dict(plan: "Plan") -> dict[str, Any]:
    cfg, acc, m = plan.shape.config, plan.accelerator, plan.chosen
    keys = ("strategy", "checkpointing", "micro_batch", "weights", "grads", "optimizer", "activations", "buffers",
            "total")

    def mem(x: Any) -> dict[str, Any]:
        return {k: getattr(x, k) for k in keys}

    return {
        "model": {"name": cfg.name, "rule": plan.shape.rule, "config": cfg.to_dict(), "params": plan.params,
                  "flops_per_token": plan.flops_per_token},
        "hardware": {"gpu": acc.name, "devices": plan.devices, "nodes": plan.nodes, "per_node": plan.per_node,
                     "peak_tflops": acc.peak_tflops, "memory_gb": acc.memory_gb, "usable_gb": acc.usable_bytes / GB,
                     "mfu": acc.mfu, "mfu_source": acc.mfu_source},
        "training": {"tokens": plan.tokens, "global_batch_seqs": plan.global_batch_seqs,
                     "global_batch_tokens": plan.global_batch_seqs * cfg.context_length,
                     "micro_batch": plan.micro_batch, "accumulation": plan.accumulation, "steps": plan.steps,
                     "peak_lr": plan.lr, "warmup_steps": plan.warmup_steps, "min_lr_ratio": 0.1,
                     "precision": plan.precision},
        "rules": RULES,
        "memory_bytes": {"chosen": mem(m) if m else None, "micro_batch_1": [mem(x) for x in plan.table]},
        "time": {"tokens_per_s": plan.tokens_per_s, "hours": plan.hours, "gpu_hours": plan.hours * plan.devices},
        "command": train_command(plan) if m else None,
    }


def plan_markdown(plan: "Plan") -> str:
    cfg, acc, m = plan.shape.config, plan.accelerator, plan.chosen
    seq = cfg.context_length
    lines = [
        f"# Plan: {cfg.name}, {plan.params / 1e9:.3f}B parameters on {plan.devices} × {acc.name}",
        "",
        "## Model",
        f"- shape: {cfg.n_layer} layers, width {cfg.n_embd}, {cfg.n_head} heads ({cfg.n_kv_head} KV), MLP "
        f"{cfg.mlp} {cfg.mlp_hidden}, vocabulary {cfg.vocab_size:,}, context {seq:,}",
        f"- rule: {plan.shape.rule}",
        f"- parameters: {plan.params:,} (scratchllm.model.param_report); training FLOPs per token: "
        f"{plan.flops_per_token:,} (6N + 12·L·h·s)",
        "",
        "## Recipe",
        "| what | value | rule |", "|---|---|---|",
        f"| tokens | {plan.tokens:,} ({plan.tokens / plan.params:.1f} per parameter) | {RULES['tokens']} |",
        f"| global batch | {plan.global_batch_seqs:,} sequences = {plan.global_batch_seqs * seq:,} tokens "
        f"| {RULES['batch']} |",
        f"| micro-batch × devices × accumulation | {plan.micro_batch} × {plan.devices} × {plan.accumulation} "
        f"| {RULES['micro']} |",
        f"| steps | {plan.steps:,} | tokens ÷ global batch |",
        f"| peak learning rate | {plan.lr:.3g} (AdamW, β = 0.9, 0.95, weight decay 0.1) | {RULES['lr']} |",
        f"| schedule | {plan.warmup_steps:,} warmup steps, cosine to 10% | {RULES['schedule']} |",
        "",
        f"## Memory per device ({plan.precision}, GB; {acc.usable_bytes / GB:.1f} of {acc.memory_gb:g} GB usable)",
        "Micro-batch 1, every configuration (rule for the choice: " + RULES["choice"] + "):",
        "",
        "| strategy | checkpointing | weights | grads | optimizer | activations | buffers | total | fits |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
        *[_mem_row(x, acc.usable_bytes) for x in plan.table],
        "",
    ]
    if m:
        lines += [f"**Chosen:** {m.strategy}, checkpointing {m.checkpointing}, micro-batch {m.micro_batch}:", "",
                  "| strategy | checkpointing | weights | grads | optimizer | activations | buffers | total | fits |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---|", _mem_row(m, acc.usable_bytes), ""]
    else:
        from scratchllm.planning.recipe import what_would_fit

        lines += [f"**WARNING: no configuration fits:** {what_would_fit(plan)}", ""]
    lines += [
        "## Time",
        f"- {plan.tokens_per_s:,.0f} tokens/s on {plan.devices} × {acc.name} ({acc.peak_tflops:g} TFLOP/s bf16 "
        f"peak) at {acc.mfu:.0%} MFU ({acc.mfu_source})",
        f"- wall time {plan.hours:,.1f} h ({plan.hours / 24:,.1f} days), {plan.hours * plan.devices:,.0f} GPU-hours",
        f"- rule: {RULES['time']}",
        "",
    ]
    if m:
        lines += ["## Launch", "", "Data: `python -m scratchllm.prepare input=… output=$DATA` first. Then, one "
                  "process per device (torchrun on each node, or SLURM):", "", "```bash", train_command(plan), "```",
                  "", "`launch_torchrun.sh` and `launch_slurm.sbatch` beside this file wrap it."]
        if m.strategy != "ddp":
            lines += ["FSDP plans run eager (`compile=false`): torch.compile over Lightning's FSDP (with or without "
                      "activation checkpointing) is untested here, and the stated MFU does not assume it."]
        lines += [""]
    return "\n".join(lines)
