"""Tiny Hugging Face reference models, built locally from random weights (nothing is downloaded).

transformers is a test-only dependency: it is the reference implementation our imports and exports must match.
Every reference model runs with eager attention in fp32 and eval mode, so differences are ours, not a kernel's.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

# vocab 200 is not a multiple of 64: our matrices get 56 padding rows that import must fill and export must drop.
VOCAB, CONTEXT, WIDTH, LAYERS, HEADS = 200, 32, 64, 2, 4


@torch.no_grad()
def perturb(model: torch.nn.Module, scale: float = 0.05) -> torch.nn.Module:
    """Add noise to every parameter, so norm scales are not 1 and biases not 0 (a swapped or dropped tensor
    would otherwise go unnoticed). Tied parameters appear once in ``parameters()`` and stay tied."""
    for p in model.parameters():
        p.add_(torch.randn_like(p) * scale)
    return model


def build_hf(kind: str, **overrides: Any) -> torch.nn.Module:
    """A random, perturbed GPT2LMHeadModel or LlamaForCausalLM of the tiny shape, in eval mode."""
    if kind == "gpt2":
        kwargs = dict(vocab_size=VOCAB, n_positions=CONTEXT, n_embd=WIDTH, n_layer=LAYERS, n_head=HEADS)
        config = transformers.GPT2Config(**{**kwargs, **overrides})
    else:
        kwargs = dict(
            vocab_size=VOCAB,
            max_position_embeddings=CONTEXT,
            hidden_size=WIDTH,
            intermediate_size=96,
            num_hidden_layers=LAYERS,
            num_attention_heads=HEADS,
            tie_word_embeddings=False,
        )
        config = transformers.LlamaConfig(**{**kwargs, **overrides})
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    return perturb(model).eval()


def load_reference(path: Any) -> torch.nn.Module:
    return transformers.AutoModelForCausalLM.from_pretrained(
        path, attn_implementation="eager", local_files_only=True, dtype=torch.float32
    ).eval()


@torch.no_grad()
def hf_logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids).logits


@pytest.fixture
def ids() -> torch.Tensor:
    """Random token ids filling the whole context (so every learned / rotary position is exercised)."""
    return torch.randint(0, VOCAB, (2, CONTEXT))


@pytest.fixture
def hf() -> SimpleNamespace:
    """``hf.build(kind, **config)``, ``hf.load(path)``, ``hf.logits(model, ids)``, ``hf.perturb(model)``."""
    return SimpleNamespace(build=build_hf, load=load_reference, logits=hf_logits, perturb=perturb)
