"""Fixtures shared by the model tests: tiny configs that build and run in milliseconds on one CPU thread."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest
import torch

from scratchllm.model import ModelConfig

# Small enough for a 48-combination sweep, big enough to have several heads, KV groups and layers.
TINY: dict[str, Any] = dict(vocab_size=65, context_length=16, n_layer=2, n_head=4, n_embd=32, mlp_hidden=64)


def make_tiny(**overrides: Any) -> ModelConfig:
    return ModelConfig(**{**TINY, **overrides})


@pytest.fixture
def tiny() -> Callable[..., ModelConfig]:
    """``tiny(position="rope", n_kv_head=2)`` → a ModelConfig of the tiny shape with those overrides."""
    return make_tiny


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny matmuls gain nothing from a second thread, and on a busy 2-core machine OpenMP threads spin-waiting
    for a descheduled partner made the overfit test 20x slower. Restored afterwards for other test folders."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
