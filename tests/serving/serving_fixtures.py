"""A tiny char-level model, tokenizer and checkpoint (written the way scratchllm.checkpoint writes one).

Untied embeddings and a large init std make a random model's output varied, so "the server returns generate's
tokens" compares real sequences rather than one repeated character.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from scratchllm import checkpoint
from scratchllm.model import GPT, ModelConfig
from scratchllm.tokenizers import CharTokenizer

# the server and browser harness is shared with the experiments (load test, README screenshot)
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "experiments"))

CHARS = "\n !',.:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
TINY: dict[str, Any] = dict(context_length=64, n_layer=2, n_head=4, n_embd=32, mlp_hidden=64, init_std=0.5,
                            tie_embeddings=False, name="tiny-char")


def tiny_tokenizer() -> CharTokenizer:
    return CharTokenizer(list(CHARS), unknown="replace")


def tiny_model(tokenizer: CharTokenizer, seed: int = 0, **overrides: Any) -> GPT:
    torch.manual_seed(seed)
    return GPT(ModelConfig(**{**TINY, "vocab_size": tokenizer.vocab_size, **overrides})).eval()


def write_checkpoint(path: Path, model: GPT, tokenizer: CharTokenizer) -> Path:
    """A checkpoint file as training leaves it: weights under ``model.`` plus scratchllm_meta (config, tokenizer)."""
    ckpt: dict[str, Any] = {"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}
    checkpoint.stamp(ckpt, checkpoint.CheckpointMeta(format=checkpoint.FORMAT, model=model.config.to_dict(),
                                                     tokenizer=tokenizer.to_dict(), objective={"name": "lm"}))
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.save(ckpt, path)
    return path

