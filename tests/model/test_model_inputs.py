"""Inputs a user can get wrong raise InputError with a message that says what to do."""

from __future__ import annotations

import pytest
import torch

from scratchllm.errors import InputError
from scratchllm.model import GPT


@pytest.fixture
def model(tiny) -> GPT:
    return GPT(tiny()).eval()


def test_context_length_itself_is_fine(model: GPT) -> None:
    logits, _ = model(torch.randint(0, 65, (1, 16)))
    assert logits.shape == (1, 16, 65)


@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
@pytest.mark.parametrize("position", ["learned", "rope"])
def test_sequence_longer_than_context_raises(tiny, attention: str, position: str) -> None:
    model = GPT(tiny(attention=attention, position=position))
    with pytest.raises(InputError, match=r"17 positions exceeds model\.context_length=16") as info:
        model(torch.randint(0, 65, (1, 17)))
    assert "crop" in str(info.value) and "\n" not in str(info.value)


def test_cached_positions_count_towards_the_context(model: GPT) -> None:
    caches = model.make_caches(1)
    model(torch.randint(0, 65, (1, 10)), caches=caches)
    with pytest.raises(InputError, match="context_length=16"):
        model(torch.randint(0, 65, (1, 7)), caches=caches, start_pos=10)


@pytest.mark.parametrize("bad", [65, 100, 127, 10_000])
def test_token_id_at_or_above_vocab_raises(model: GPT, bad: int) -> None:
    """65..127 would index the padding rows of the embedding without crashing: the check must catch them."""
    idx = torch.randint(0, 65, (2, 8))
    idx[1, 3] = bad
    with pytest.raises(InputError, match=rf"token id {bad} .*vocabulary of 65") as info:
        model(idx)
    assert "\n" not in str(info.value)


def test_negative_token_id_raises(model: GPT) -> None:
    idx = torch.randint(0, 65, (2, 8))
    idx[0, 0] = -1
    with pytest.raises(InputError, match="vocabulary of 65"):
        model(idx)


def test_negative_token_id_message_names_the_bad_id(model: GPT) -> None:
    """A negative id is named in the message (not the largest id, which may be valid)."""
    idx = torch.full((1, 8), 5)
    idx[0, 0] = -1
    with pytest.raises(InputError, match="token id -1 "):
        model(idx)


def test_input_error_is_a_value_error() -> None:
    assert issubclass(InputError, ValueError)
