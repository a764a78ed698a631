"""Text generation with a trained GPT: sampling filters and a KV-cached decode loop.

``from scratchllm.generation import generate`` needs only the model; turning text into ids and back is the
tokenizer's job. ``sampling`` holds the pure logits → token functions and ``SamplingConfig`` (every setting of how
tokens are picked, with its defaults), ``generate`` the loop around the model.
"""

from scratchllm.generation.fastpath import decode_session
from scratchllm.generation.generate import generate, stream
from scratchllm.generation.sampling import (
    SamplingConfig,
    apply_repetition_penalty,
    apply_temperature,
    filter_logits,
    min_p_filter,
    sample_next,
    top_k_filter,
    top_p_filter,
)

__all__ = [
    "SamplingConfig",
    "apply_repetition_penalty",
    "apply_temperature",
    "decode_session",
    "filter_logits",
    "generate",
    "min_p_filter",
    "sample_next",
    "stream",
    "top_k_filter",
    "top_p_filter",
]
