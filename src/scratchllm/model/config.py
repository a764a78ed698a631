"""`ModelConfig`: every architectural choice of the GPT as a plain, serialisable field.

One model class, many variants (litgpt-style): a variant is a value here, never a copy of a file. The field
names are the override surface users type on the command line, e.g. ``model.norm=rmsnorm model.n_kv_head=2``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from scratchllm.errors import ConfigError

ATTENTION_CHOICES = ("sdpa", "explicit")
NORM_CHOICES = ("layernorm", "rmsnorm")
MLP_CHOICES = ("gelu", "swiglu")
POSITION_CHOICES = ("learned", "rope")
# Activation checkpointing: recompute in the backward pass instead of keeping for it. Not part of the model's
# identity (same function, same weights), so it is left out of comparisons.
CHECKPOINTING_CHOICES = ("none", "full", "selective")


def _round_up(n: int, multiple: int) -> int:
    return ((n + multiple - 1) // multiple) * multiple


@dataclass
class ModelConfig:
    """Shape and variant of one GPT.

    ``vocab_size`` is the real vocabulary (what the tokenizer can emit, what sampling draws from); the
    embedding and output matrices are padded to ``padded_vocab_size`` (a multiple of ``vocab_multiple``) because
    matmuls with a dimension that is a multiple of 64 run markedly faster. Padding rows never receive a target.
    """

    vocab_size: int = 50257
    context_length: int = 1024
    n_layer: int = 12
    n_head: int = 12
    n_kv_head: int | None = None  # None = n_head (MHA); fewer = GQA; 1 = MQA
    n_embd: int = 768
    mlp_hidden: int | None = None  # None = 4*n_embd (gelu) or the Llama rule 8/3*n_embd rounded to 256 (swiglu)
    attention: str = "auto"  # a training run picks explicit or sdpa (training/auto.py); elsewhere sdpa
    norm: str = "layernorm"
    norm_eps: float = 1e-5
    mlp: str = "gelu"
    position: str = "learned"
    rope_theta: float = 10000.0
    tie_embeddings: bool = True
    bias: bool = True
    dropout: float = 0.0
    init_std: float = 0.02
    vocab_multiple: int = 64
    name: str = field(default="custom", compare=False)
    # none | full (each block keeps only its input) | selective (each block's attention sub-layer is recomputed)
    checkpointing: str = field(default="none", compare=False)

    def __post_init__(self) -> None:
        # Hydra hands us DictConfig values; normalise the aliases first, then check everything at once.
        if self.n_kv_head is None:
            self.n_kv_head = self.n_head
        if self.attention == "auto":  # a training run resolves it first (training/auto.py); elsewhere eager → sdpa
            self.attention = "sdpa"
        if self.mlp_hidden is None:
            if self.mlp == "swiglu":
                self.mlp_hidden = _round_up(int(8 * self.n_embd / 3), 256)
            else:
                self.mlp_hidden = 4 * self.n_embd
        self.validate()

    # ----------------------------------------------------------------------------------------------- checks
    def validate(self) -> None:
        for fname, value, choices in (
            ("attention", self.attention, ATTENTION_CHOICES),
            ("norm", self.norm, NORM_CHOICES),
            ("mlp", self.mlp, MLP_CHOICES),
            ("position", self.position, POSITION_CHOICES),
            ("checkpointing", self.checkpointing, CHECKPOINTING_CHOICES),
        ):
            if value not in choices:
                raise ConfigError(
                    f"model.{fname}={value!r} is not a known variant; choose one of: {', '.join(choices)}"
                )
        for fname in ("vocab_size", "context_length", "n_layer", "n_head", "n_kv_head", "n_embd", "mlp_hidden"):
            value = getattr(self, fname)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"model.{fname} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ConfigError(
                f"model.n_embd={self.n_embd} is not divisible by model.n_head={self.n_head}; "
                f"pick n_head from the divisors of n_embd ({_divisors(self.n_embd)})"
            )
        if self.n_head % self.n_kv_head:
            raise ConfigError(
                f"model.n_head={self.n_head} is not divisible by model.n_kv_head={self.n_kv_head}; "
                f"valid n_kv_head values: {_divisors(self.n_head)} (1 = MQA, n_head = MHA)"
            )
        if self.position == "rope" and self.head_dim % 2:
            raise ConfigError(f"position=rope needs an even head size, got n_embd/n_head = {self.head_dim}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout}")
        if self.norm_eps <= 0 or self.rope_theta <= 0 or self.init_std <= 0:
            raise ConfigError("model.norm_eps, model.rope_theta and model.init_std must be positive")

    # ------------------------------------------------------------------------------------------ derived
    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def padded_vocab_size(self) -> int:
        return _round_up(self.vocab_size, self.vocab_multiple)

    # ------------------------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelConfig":
        """Build from a plain mapping (a YAML preset, a checkpoint's hparams); unknown keys are an error."""
        data = {k: v for k, v in dict(data).items() if k != "_target_"}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown model field(s) {', '.join(unknown)}; valid fields: {', '.join(sorted(known))}"
            )
        return cls(**data)

    def replace(self, **changes: Any) -> "ModelConfig":
        return self.from_dict({**self.to_dict(), **changes})


def _divisors(n: int) -> str:
    return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)
