"""``init_from=``: the model a fine-tuning run starts from, with the tokenizer that comes with it.

A training checkpoint of ours (``.ckpt``, a run folder, or ``last``) or a Hugging Face GPT-2/Llama folder, read
through the same loader generation uses (``scratchllm.checkpoint`` / ``interop.hf``), so every kind of starting
point is one code path. After the data module has added the chat markers to the tokenizer, ``grow_to`` grows the
model's vocabulary to match (``model.vocab.grow_vocab``: old logits unchanged, new rows the mean of the old).
"""

from __future__ import annotations

from pathlib import Path

from scratchllm.errors import CheckpointError, ConfigError
from scratchllm.model import GPT
from scratchllm.model.vocab import grow_vocab
from scratchllm.tokenizers import Tokenizer


def load_start(spec: str | Path, log_dir: str | Path = "logs") -> tuple[GPT, Tokenizer]:
    """The starting model (float32, CPU, train mode) and its tokenizer; one-line errors name ``init_from``."""
    from scratchllm.generation.loading import load_for_generation

    try:
        model, tokenizer = load_for_generation(spec, device="cpu", dtype="float32", log_dir=log_dir)
    except CheckpointError as err:
        raise CheckpointError(f"init_from={spec}: {err}") from None
    if tokenizer is None:
        raise ConfigError(f"init_from={spec} names no tokenizer we can rebuild offline (a Hugging Face folder "
                          "without GPT-2's vocabulary); export it with scratchllm's save_hf, which stores one")
    return model.train(), tokenizer


def grow_to(model: GPT, tokenizer: Tokenizer) -> GPT:
    """Grow ``model``'s vocabulary to the tokenizer's (after special tokens were added)."""
    return grow_vocab(model, tokenizer.vocab_size)
