"""Shared pytest fixtures and settings."""

from __future__ import annotations

from typing import Iterator

import pytest
import torch

# Tests use tiny models, where thread start-up costs more than it saves, and two threads fight over the cores
# with subprocess tests: one thread per test process.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Every test starts at one thread and gets it back, whatever the code under test set (threads=auto, a
    fixture that trains with 2): decode steps are tiny ops, where 2 threads' hand-offs cost ~50x the work."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
