"""Fixtures of the serving tests (helpers in serving_fixtures.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.serving.serving_fixtures import tiny_model, tiny_tokenizer, write_checkpoint


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tokenizer = tiny_tokenizer()
    return write_checkpoint(tmp_path_factory.mktemp("serve") / "tiny.ckpt", tiny_model(tokenizer), tokenizer)
