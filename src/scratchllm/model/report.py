"""How big is a model and how much does it cost per token.

Counts are computed from the config alone (no tensors), so they are exact and instant for the 10B preset too, and
a test checks them against a real ``GPT``'s ``parameters()``.

Parameter counts are given over the *real* vocabulary (what Hugging Face reports for the same model); the rows
added to pad the vocabulary to a multiple of 64 are reported apart.

FLOPs per token (Kaplan et al. 2020, PaLM appendix B): a matmul with an (m × n) weight costs 2·m·n FLOPs per token
forward and twice that backward, hence "6N" for training. Attention adds the score and mixing products,
2·2·T·d per layer forward at context T (the causal half is not subtracted, by convention). Embedding lookups and
norms are not matmuls and are left out; the output head is a matmul, tied or not, so it counts.
"""

from __future__ import annotations

from dataclasses import dataclass

from scratchllm.model.config import ModelConfig


@dataclass(frozen=True)
class ParamReport:
    embedding: int  # token embedding (real vocab rows)
    position: int  # learned position embedding
    attention: int  # all blocks' qkv + output projections
    mlp: int  # all blocks' MLPs
    norms: int  # all norms' weights and biases
    head: int  # untied output head (real vocab rows); 0 when tied
    padding: int  # parameters in vocab padding rows (embedding, and head when untied)

    @property
    def total(self) -> int:
        """Parameters over the real vocabulary (what transformers reports)."""
        return self.embedding + self.position + self.attention + self.mlp + self.norms + self.head

    @property
    def non_embedding(self) -> int:
        """Kaplan's N: everything but the token and position embeddings (an untied head counts)."""
        return self.total - self.embedding - self.position

    @property
    def allocated(self) -> int:
        """What ``sum(p.numel() for p in model.parameters())`` gives: the total plus the padding rows."""
        return self.total + self.padding


def param_report(config: ModelConfig) -> ParamReport:
    d, L = config.n_embd, config.n_layer
    hd = config.head_dim
    b = 1 if config.bias else 0
    qkv_out = (config.n_head + 2 * config.n_kv_head) * hd
    attention = (d * qkv_out + b * qkv_out) + (d * d + b * d)
    fc_out = 2 * config.mlp_hidden if config.mlp == "swiglu" else config.mlp_hidden
    mlp = (d * fc_out + b * fc_out) + (config.mlp_hidden * d + b * d)
    norm_params = d * (2 if config.norm == "layernorm" and config.bias else 1)
    pad_rows = config.padded_vocab_size - config.vocab_size
    return ParamReport(
        embedding=config.vocab_size * d,
        position=config.context_length * d if config.position == "learned" else 0,
        attention=L * attention,
        mlp=L * mlp,
        norms=(2 * L + 1) * norm_params,
        head=0 if config.tie_embeddings else config.vocab_size * d,
        padding=pad_rows * d * (1 if config.tie_embeddings else 2),
    )


def matmul_params(config: ModelConfig) -> int:
    """Weights that take part in a matmul per token: block projections and the output head (real vocab)."""
    r = param_report(config)
    d = config.n_embd
    bias_per_layer = 0
    if config.bias:
        qkv_out = (config.n_head + 2 * config.n_kv_head) * config.head_dim
        fc_out = 2 * config.mlp_hidden if config.mlp == "swiglu" else config.mlp_hidden
        bias_per_layer = qkv_out + d + fc_out + d
    return r.attention + r.mlp - config.n_layer * bias_per_layer + config.vocab_size * d


def flops_per_token(config: ModelConfig, *, training: bool = True, context: int | None = None) -> int:
    """Model FLOPs for one token (forward, or forward + backward when ``training``) at the given context."""
    t = context or config.context_length
    forward = 2 * matmul_params(config) + 4 * config.n_layer * t * config.n_embd
    return 3 * forward if training else forward


def format_count(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def report_table(configs: dict[str, ModelConfig]) -> str:
    """A Markdown table of the parameter breakdown and training FLOPs/token of each named config."""
    header = (
        "| preset | total | non-embedding | embedding | position | attention | mlp | norms | head | padding "
        "| train GFLOP/token |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    rows = [header]
    for name, cfg in configs.items():
        r = param_report(cfg)
        rows.append(
            f"| {name} | {r.total:,} | {r.non_embedding:,} | {r.embedding:,} | {r.position:,} | {r.attention:,} "
            f"| {r.mlp:,} | {r.norms:,} | {r.head:,} | {r.padding:,} | {flops_per_token(cfg) / 1e9:.3f} |"
        )
    return "\n".join(rows)
