"""The GPT model in plain PyTorch: ``from scratchllm.model import GPT, ModelConfig`` needs no Lightning or Hydra."""

from scratchllm.model.attention import CausalSelfAttention, KVCache
from scratchllm.model.config import ModelConfig
from scratchllm.model.gpt import GPT, IGNORE_INDEX
from scratchllm.model.linear import convert, is_plain_float_linear, is_residual_projection, make_linear
from scratchllm.model.presets import load_preset, preset_names
from scratchllm.model.report import ParamReport, flops_per_token, param_report
from scratchllm.model.vocab import grow_vocab

__all__ = [
    "GPT",
    "IGNORE_INDEX",
    "CausalSelfAttention",
    "KVCache",
    "ModelConfig",
    "ParamReport",
    "convert",
    "flops_per_token",
    "grow_vocab",
    "is_plain_float_linear",
    "is_residual_projection",
    "load_preset",
    "make_linear",
    "param_report",
    "preset_names",
]
