"""Tiny random GPTs for the generation tests.

Untied embeddings and a large init std make a random model's greedy output varied (with tied weights and the
default 0.02 std it mostly repeats its input token), so "cached equals uncached" compares real sequences.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest
import torch

from scratchllm.model import GPT, ModelConfig

TINY: dict[str, Any] = dict(
    vocab_size=65, context_length=16, n_layer=2, n_head=4, n_embd=32, mlp_hidden=64, init_std=0.5,
    tie_embeddings=False,
)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Decode steps are tiny ops: with 2 threads on the shared 2-core box, thread hand-offs cost ~50x the work."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_model(seed: int = 0, **overrides: Any) -> GPT:
    torch.manual_seed(seed)
    return GPT(ModelConfig(**{**TINY, **overrides})).eval()


@pytest.fixture
def tiny_model() -> Callable[..., GPT]:
    """``tiny_model(position="rope", n_kv_head=2)`` → a freshly initialised tiny GPT in eval mode."""
    return make_model
