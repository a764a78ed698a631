"""Tiny starting models for the fine-tuning tests: a char checkpoint of ours written by scratchllm.checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from scratchllm import checkpoint as ckpt_lib
from scratchllm.model import GPT, ModelConfig
from scratchllm.tokenizers import CharTokenizer

CHARS = "\n !'(),-.:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
TINY: dict[str, Any] = dict(context_length=256, n_layer=2, n_head=2, n_embd=32, mlp_hidden=64, name="tiny-char")


def save_start(path: Path, seed: int = 0, **fields: Any) -> Path:
    """A pretraining checkpoint as training writes it (state_dict under ``model.``, metadata, digest); ``fields``
    change TINY's."""
    tokenizer = CharTokenizer(list(CHARS), unknown="replace")
    torch.manual_seed(seed)
    model = GPT(ModelConfig(**{**TINY, **fields}, vocab_size=tokenizer.vocab_size))
    checkpoint = {"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}, "global_step": 0}
    ckpt_lib.stamp(checkpoint, ckpt_lib.CheckpointMeta(format=ckpt_lib.FORMAT, model=model.config.to_dict(),
                                                       tokenizer=tokenizer.to_dict(), objective={"name": "lm"}))
    ckpt_lib.save(checkpoint, path)
    return path


@pytest.fixture(scope="session")
def start_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_start(tmp_path_factory.mktemp("start") / "pretrained.ckpt")
