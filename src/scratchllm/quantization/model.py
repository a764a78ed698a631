"""Quantizing a whole GPT: which layers, in which format, and how the token embedding follows.

Every matrix of a block (``attn.qkv``, ``attn.proj``, ``mlp.fc``, ``mlp.proj``) and the vocabulary head
``lm_head`` is swapped through the model's one linear construction point, ``model.linear.convert``, offered only
``is_plain_float_linear`` linears (a layer a converter already made, e.g. an adapter, is left alone).

The token embedding is the other large matrix (a third of gpt2-124m), so it is quantized too, in the same format,
by rows (a row is one token's vector, and per-row scales are the head's per-output-channel scales):

- **tied** (GPT-2): the head and the embedding are one matrix, so they stay one: ``QuantizedEmbedding`` looks up
  rows of the quantized head (dequantising only the rows asked for) and the file stores the matrix once;
- **untied** (Llama-shaped): the embedding gets its own quantized table.

A learned position table (GPT-2's 1024×768: 0.6% of gpt2-124m, but at 2 bytes a number it alone lifted the int8
file to 0.505× bf16) is quantized by rows to int8 in both methods: it is only ever looked up, a row is one position's
vector, and int8 rows moved a trained nano model's held-out perplexity by 0.001%. Norms and biases stay float
(bf16 in the file): ~0.1% of the weights, each added to or multiplying a whole feature. With everything else at
one byte, int8 lands at 0.5 + (2·scales + norms/biases)/bf16 bytes: 0.5016× for gpt2-124m
(experiments/results/quantize_bytes_2026-12-02.md); per-row scales make exactly 0.5× unreachable without storing
something below 8 bits.
Files written before positions were quantized (format 1) have no ``quantize_positions`` in their settings and load
with a float table (``QuantConfig.from_dict``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

import torch
from torch import nn

from scratchllm.errors import ConfigError
from scratchllm.model import GPT, ModelConfig
from scratchllm.model.linear import convert, is_plain_float_linear
from scratchllm.quantization.int4 import GROUP_SIZES, Int4Linear
from scratchllm.quantization.int8 import Int8Linear

METHODS = ("int8", "int4")
QuantLinear = Int8Linear | Int4Linear


@dataclass(frozen=True)
class QuantConfig:
    """method: int8 (per output channel) | int4 (group-wise); group_size and symmetric apply to int4 only;
    quantize_positions: the learned position table as int8 rows (module doc; False only for format-1 files)."""

    method: str = "int8"
    group_size: int = 64
    symmetric: bool = False
    quantize_positions: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"method={self.method!r} is not a quantization method; choose one of: "
                              f"{', '.join(METHODS)}")
        if self.method == "int4" and self.group_size not in GROUP_SIZES:
            raise ConfigError(f"group_size={self.group_size} is not supported for int4; choose one of "
                              f"{', '.join(map(str, GROUP_SIZES))} (it must also divide n_embd and the MLP width)")

    def to_dict(self) -> dict[str, Any]:
        if self.method == "int4":
            return asdict(self)
        return {"method": "int8", "quantize_positions": self.quantize_positions}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "QuantConfig":
        """Settings as a file stores them; a format-1 file's (no ``quantize_positions``) had a float table."""
        return cls(**{k: data[k] for k in ("method", "group_size", "symmetric") if k in data},
                   quantize_positions=bool(data.get("quantize_positions", False)))

    def check_shapes(self, config: ModelConfig) -> None:
        """Every quantized matrix's input width must be a whole number of groups."""
        if self.method != "int4":
            return
        widths = {"model.n_embd": config.n_embd, "model.mlp_hidden": config.mlp_hidden}
        bad = {name: w for name, w in widths.items() if w % self.group_size}
        if bad:
            fits = [g for g in GROUP_SIZES if all(w % g == 0 for w in widths.values())]
            name, width = next(iter(bad.items()))
            raise ConfigError(f"group_size={self.group_size} does not divide {name}={width}; use "
                              f"group_size={fits[-1] if fits else 32} " + ("" if fits else "(none fits: use int8)"))

    def empty_linear(self, in_features: int, out_features: int, bias: bool, device: Any = None) -> QuantLinear:
        if self.method == "int8":
            return Int8Linear(in_features, out_features, bias, device=device)
        return Int4Linear(in_features, out_features, bias, self.group_size, device=device)

    def quantize_linear(self, linear: nn.Linear) -> QuantLinear:
        if self.method == "int8":
            return Int8Linear.from_linear(linear)
        return Int4Linear.from_linear(linear, self.group_size, self.symmetric)


class QuantizedEmbedding(nn.Module):
    """Token embedding over a quantized matrix: its own (``table``), or, tied, the head's (not a submodule here,
    so the state dict holds the matrix once, under ``lm_head``)."""

    def __init__(self, table: QuantLinear, *, tied: bool) -> None:
        super().__init__()
        if tied:
            self.__dict__["_tied"] = table  # outside nn.Module's registry: moved and saved as lm_head
        else:
            self.table = table
        self.embedding_dim = table.in_features
        # An empty float tensor that model.to(dtype/device) moves with the rest: what forward returns follows it
        # (the stored scales stay bf16 whatever the model is cast to, so they cannot tell).
        self.register_buffer("dtype_ref", torch.empty(0, device=table.qweight.device), persistent=False)

    @property
    def source(self) -> QuantLinear:
        return self.__dict__.get("_tied") or self.table

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.source.embed(ids, self.dtype_ref.dtype)


def weight_format(model: nn.Module) -> str:
    """``int4`` / ``int8`` when the model's matrices are quantized, else ``float``: what a result computed with the
    model should say it measured. Any 4-bit layer makes it ``int4``: an int4 model keeps its position table in int8
    rows (module doc), so meeting one int8 layer does not say the method."""
    kinds = {type(module) for module in model.modules()}
    return "int4" if Int4Linear in kinds else "int8" if Int8Linear in kinds else "float"


def quantize_model(model: GPT, quant: QuantConfig) -> list[str]:
    """Quantize ``model`` in place (module doc); returns the names of the layers replaced."""
    quant.check_shapes(model.config)
    if isinstance(model.tok_emb, QuantizedEmbedding):
        raise ConfigError("this model is already quantized; quantize the original float checkpoint instead")
    tied = model.lm_head.weight is model.tok_emb.weight
    replaced = convert(model, lambda lin: quant.quantize_linear(lin) if is_plain_float_linear(lin) else None)
    if tied:
        if not isinstance(model.lm_head, (Int8Linear, Int4Linear)):
            raise ConfigError("the tied lm_head is not a plain float linear (an adapter?); merge it first")
        model.tok_emb = QuantizedEmbedding(model.lm_head, tied=True)
    else:
        model.tok_emb = QuantizedEmbedding(quant.quantize_linear(_as_linear(model.tok_emb)), tied=False)
    replaced.append("tok_emb")
    if model.pos_emb is not None and quant.quantize_positions:
        model.pos_emb = QuantizedEmbedding(Int8Linear.from_linear(_as_linear(model.pos_emb)), tied=False)
        replaced.append("pos_emb")
    return replaced


def _as_linear(embedding: nn.Embedding) -> nn.Linear:
    """An embedding table (rows, dim) is a linear's weight by shape: this lets it be quantized by rows like one."""
    table = nn.Linear(embedding.embedding_dim, embedding.num_embeddings, bias=False, device="meta")
    table.weight = embedding.weight
    return table


def quantized_skeleton(config: ModelConfig, quant: QuantConfig) -> GPT:
    """A quantized GPT of this shape with empty (uninitialised) tensors, built without ever allocating the float
    weights: the float model is made on the meta device, then every quantized layer is created for real."""
    quant.check_shapes(config)
    with torch.device("meta"):
        model = GPT(config)
    convert(model, lambda lin: quant.empty_linear(lin.in_features, lin.out_features, lin.bias is not None, "cpu"))
    if config.tie_embeddings:
        model.tok_emb = QuantizedEmbedding(model.lm_head, tied=True)
    else:
        model.tok_emb = QuantizedEmbedding(quant.empty_linear(config.n_embd, config.padded_vocab_size, False, "cpu"),
                                           tied=False)
    if model.pos_emb is not None and quant.quantize_positions:
        model.pos_emb = QuantizedEmbedding(Int8Linear(config.n_embd, config.context_length, False, device="cpu"),
                                           tied=False)
    return model
