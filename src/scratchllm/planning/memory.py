"""Per-device training memory, from the config alone.

States (ZeRO, Rajbhandari et al. 2020): mixed-precision AdamW holds 16 bytes per parameter. Lightning's
bf16-mixed keeps fp32 weights (4), fp32 gradients (4) and Adam's two fp32 moments (8), and autocast makes a bf16
copy of each weight a matmul uses (2), which autograd keeps until the backward pass of every layer whose
activations are stored. FSDP divides the states by the shard group: every device (full shard) or the devices of a
node (hybrid shard: sharded within a node, replicated across nodes).

Activations per transformer layer (Korthikanti et al. 2022, "Reducing Activation Recomputation in Large
Transformer Models", §4.1): s·b·h·(34 + 5·a·s/h) bytes for a GPT-2 layer in 16 bit with dropout, 34·s·b·h with
flash attention (no s×s matrix kept), 2·s·b·h with full checkpointing (only the layer input kept). ``per_layer``
counts the same tensors for any shape (GQA, SwiGLU, dropout off) and gives exactly those numbers on their
assumptions (tests/planning checks).
"""

from __future__ import annotations

from dataclasses import dataclass

from scratchllm.model.config import ModelConfig
from scratchllm.model.report import param_report

# bytes per parameter: weights, gradients, optimizer (Adam m and v), autocast copy; bytes per activation (a matmul's
# input or output) and per residual-stream value (autocast keeps the residual stream and the norms in fp32)
PRECISIONS = {
    "bf16-mixed": dict(weights=4, grads=4, optimizer=8, cast=2, act=2, resid=4),
    "32-true": dict(weights=4, grads=4, optimizer=8, cast=0, act=4, resid=4),
    "bf16-true": dict(weights=2, grads=2, optimizer=4, cast=0, act=2, resid=2),
}
# AdamW implementations: foreach (``optim.fused=false``) holds one state-sized temporary (the sqrt of the second
# moment) during its step; the fused kernel (the default on CPU and CUDA) none
OPTIMIZERS = ("fused", "foreach")
STRATEGIES = ("ddp", "fsdp-hybrid", "fsdp-full")
CHECKPOINTING = ("none", "selective", "full")  # selective: the attention sub-layer is recomputed


def per_layer(cfg: ModelConfig, tokens: int, seq: int, act: int, *, flash: bool = True,
              resid: int | None = None) -> dict[str, float]:
    """Bytes one layer keeps for backward, split into the attention and MLP sub-layers (norms included).

    ``tokens`` = micro-batch × sequence length. Dropout adds 1-byte masks (and a kept copy of the attention
    probabilities) only when ``cfg.dropout > 0``. ``resid``: bytes per value of the residual stream, which each
    norm keeps as its input (default ``act``; 4 under autocast, measured: bf16-mixed keeps the norms' inputs fp32).
    """
    h, f, kv = cfg.n_embd, cfg.mlp_hidden, cfg.n_kv_head * cfg.head_dim
    r = act if resid is None else resid
    drop = cfg.dropout > 0
    # norm input, qkv input (norm output), q and k, v, output-projection input; dropout mask on the output
    attn = tokens * (r * h + act * (h + (h + kv) + kv + h) + (h if drop else 0))
    if cfg.position == "rope":  # rotated copies of q and k (the unrotated ones stay in the qkv output v views)
        attn += tokens * act * (h + kv)
    if not flash:  # softmax output a·s²·b, plus its dropout mask and dropped copy
        b = tokens // seq
        attn += cfg.n_head * seq * seq * b * (act + ((1 + act) if drop else 0))
    # norm input, fc input, then GELU: its input and output (f each); SwiGLU: gate, up, silu(gate), product
    mlp_tensors = 4 * f if cfg.mlp == "swiglu" else 2 * f
    mlp = tokens * (r * h + act * (h + mlp_tensors) + (h if drop else 0))
    if cfg.norm == "rmsnorm":  # ours keeps its normalised copy before the weight too (layers.RMSNorm)
        attn, mlp = attn + tokens * r * h, mlp + tokens * r * h
    return {"attention": attn, "mlp": mlp}


def activations(cfg: ModelConfig, micro: int, checkpointing: str, act: int, flash: bool = True,
                rebuilt: bool = True, resid: int | None = None) -> float:
    """Activation bytes at the peak of one micro-batch's backward pass (``rebuilt=False``: without the layer
    that checkpointing recomputes at a time, i.e. what the forward pass leaves saved)."""
    seq = cfg.context_length
    tokens = micro * seq
    r = act if resid is None else resid
    layer = per_layer(cfg, tokens, seq, act, flash=flash, resid=r)
    full_layer = layer["attention"] + layer["mlp"]
    block_input = tokens * cfg.n_embd * r
    if checkpointing == "none":
        kept = cfg.n_layer * full_layer
    elif checkpointing == "selective":  # the layer input and the MLP's tensors stay; one attention is rebuilt
        kept = cfg.n_layer * (block_input + layer["mlp"]) + layer["attention"]
    else:  # full: 2·s·b·h per layer (16 bit), plus one layer rebuilt at a time
        kept = cfg.n_layer * block_input + full_layer
    if not rebuilt:  # what stays through the whole backward pass, without the one layer being rebuilt
        kept -= 0 if checkpointing == "none" else (full_layer if checkpointing == "full" else layer["attention"])
    # head: final norm input and output (and RMSNorm's normalised copy), and the loss's fp32 log-softmax over
    # the (padded) vocabulary
    norm_f = ((2 if cfg.norm == "rmsnorm" else 1) * r + act) * cfg.n_embd
    head = tokens * (norm_f + 4 * cfg.padded_vocab_size)
    return kept + head


@dataclass(frozen=True)
class Memory:
    strategy: str
    checkpointing: str
    precision: str
    micro_batch: int
    weights: float
    grads: float
    optimizer: float
    activations: float
    buffers: float

    @property
    def total(self) -> float:
        return self.weights + self.grads + self.optimizer + self.activations + self.buffers


def block_params(cfg: ModelConfig) -> int:
    r = param_report(cfg)
    return (r.attention + r.mlp + 2 * cfg.n_layer * cfg.n_embd * (2 if cfg.norm == "layernorm" and cfg.bias else 1)
            ) // cfg.n_layer


def memory(cfg: ModelConfig, *, strategy: str, checkpointing: str, precision: str, micro: int, world: int,
           per_node: int, flash: bool = True, optimizer: str = "fused") -> Memory:
    """One device's peak memory for this strategy × checkpointing × precision at micro-batch ``micro``.

    The peak is the larger of two moments (checked against real CPU runs: experiments/bench_memory.py):
    - the end of the forward pass: weights, optimizer state, the previous step's gradients (Lightning zeroes them
      between the forward and the backward pass), every kept activation, autocast's weight copies, and the
      logits alive while the loss is computed (plus their fp32 copy under bf16);
    - the optimizer step: weights, gradients, state and the step's temporaries (``optimizer``: foreach keeps one
      state-sized temporary; fused none), the activations gone.
    ``buffers`` holds what is not weights, gradients, state or kept activations at the larger moment."""
    p = PRECISIONS[precision]
    n = param_report(cfg).allocated  # what the device holds: the padded vocabulary rows too
    shard = {"ddp": 1, "fsdp-hybrid": min(world, per_node), "fsdp-full": world}[strategy]
    blk = block_params(cfg)
    outside = n - cfg.n_layer * blk  # embeddings, head, final norm: FSDP's root unit
    # autocast's bf16 copies live for every layer whose activations are kept (one at a time under full)
    cast = p["cast"] * (outside + (blk if checkpointing == "full" else n - outside))
    acts = activations(cfg, micro, checkpointing, p["act"], flash, resid=p["resid"])
    # logits alive while the loss is computed (the fp32 log-softmax itself is counted in the activations)
    loss = micro * cfg.context_length * cfg.padded_vocab_size * (p["act"] + (4 if p["act"] != 4 else 0))
    step = n * p["optimizer"] / 2 / shard if optimizer == "foreach" else 0
    moment = max(cast + loss, step - acts)  # what the larger moment adds to weights, grads, state, activations
    if strategy == "ddp":
        # DDP's all-reduce buckets are a second copy of the gradients (Lightning keeps gradient_as_bucket_view off);
        # one device runs without DDP
        buffers = (n * p["grads"] if world > 1 else 0) + moment
    else:
        # the root unit stays gathered through forward and backward; two blocks gathered (the running one and the
        # prefetched next) with one block's unsharded gradients before the reduce-scatter
        buffers = (outside + 2 * blk) * p["weights"] + blk * p["grads"] + moment
    return Memory(
        strategy, checkpointing, precision, micro,
        weights=n * p["weights"] / shard,
        grads=n * p["grads"] / shard,
        optimizer=n * p["optimizer"] / shard,
        activations=acts,
        buffers=buffers,
    )
