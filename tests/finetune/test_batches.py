"""Truncation policy with counts, padding with masks, length-grouped batches, and the built-in plays data."""

from __future__ import annotations

import pytest
import torch

from scratchllm.errors import ConfigError, DataError
from scratchllm.finetune.batches import LengthGroupedBatches, collate, encode_examples
from scratchllm.finetune.chat import ChatTemplate, add_chat_tokens
from scratchllm.finetune.plays import baseline_answer, builtin_splits
from scratchllm.model import GPT, ModelConfig
from scratchllm.model.gpt import IGNORE_INDEX
from scratchllm.tokenizers import build_tokenizer


def template() -> ChatTemplate:
    tok = build_tokenizer("char", train_text="abcdefghij? \n")
    add_chat_tokens(tok)
    return ChatTemplate(tok)


def conv(question: str, answer: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def test_truncation_policy_is_counted() -> None:
    t = template()
    short, long_answer, long_question = conv("ab", "c"), conv("ab", "c" * 40), conv("a" * 60, "b")
    right = encode_examples([short, long_answer, long_question], t, context_length=32, truncation="right")
    assert (len(right.examples), right.truncated, right.dropped) == (2, 2, 1)  # the long question lost its answer
    assert all(len(x) == len(y) <= 32 for x, y in right.examples)
    drop = encode_examples([short, long_answer], t, context_length=32, truncation="drop")
    assert (len(drop.examples), drop.truncated, drop.dropped) == (1, 0, 1)
    with pytest.raises(ConfigError, match="truncation"):
        encode_examples([short], t, context_length=32, truncation="left")
    with pytest.raises(DataError, match="raise data.context_length"):
        encode_examples([long_question], t, context_length=32)


def test_padding_is_masked_and_does_not_change_real_logits() -> None:
    t = template()
    examples = encode_examples([conv("ab", "c"), conv("abcdefgh", "ij")], t, context_length=64).examples
    batch = collate(examples, pad_id=0)
    n_short = len(examples[0][0])
    assert batch["attention_mask"][0].tolist() == [1] * n_short + [0] * (batch["input_ids"].shape[1] - n_short)
    assert (batch["labels"][0, n_short:] == IGNORE_INDEX).all()
    model = GPT(ModelConfig(vocab_size=t.tokenizer.vocab_size, context_length=64, n_layer=1, n_head=2, n_embd=16))
    alone, _ = model(torch.tensor([examples[0][0]]))
    padded, _ = model(batch["input_ids"][:1])
    torch.testing.assert_close(padded[0, :n_short], alone[0], rtol=0, atol=1e-6)  # causal: right padding is inert


def test_length_grouped_batches_cover_everything_once_and_group_lengths() -> None:
    lengths = [(i * 37) % 101 for i in range(400)]
    sampler = LengthGroupedBatches(lengths, 8, seed=1, group_batches=50)
    first, second = list(sampler), list(sampler)
    assert sorted(i for b in first for i in b) == list(range(400))
    assert first != second  # a new order each epoch
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in first) / len(first)
    assert spread < 10  # random batches would spread over ~80
    ranks = [list(LengthGroupedBatches(lengths, 8, seed=1, rank=r, world=3)) for r in range(3)]
    assert len({len(r) for r in ranks}) == 1
    assert not set(i for b in ranks[0] for i in b) & set(i for b in ranks[1] for i in b)


def test_builtin_plays_are_deterministic_held_out_and_checkable() -> None:
    a = builtin_splits("who_speaks_next", per_play=5, val_per_play=5)
    b = builtin_splits("who_speaks_next", per_play=5, val_per_play=5)
    assert a == b and len(a["val"]) == 4 * 5 and len(a["train"]) == 34 * 5
    train_users = {c[1]["content"] for c in a["train"]}
    assert not train_users & {c[1]["content"] for c in a["val"]}
    c = a["val"][0]
    assert c[1]["content"].startswith("Who speaks next?\n") and c[2]["content"].isupper()
    assert baseline_answer(c) == c[1]["content"].split("\n")[1].split(":")[0]
    with pytest.raises(ConfigError, match="not a built-in set"):
        builtin_splits("riddles")


def test_batches_resume_from_a_served_count_across_epochs() -> None:
    lengths = [(i * 37) % 101 for i in range(90)]
    uninterrupted = LengthGroupedBatches(lengths, 8, seed=3)
    stream = list(uninterrupted) + list(uninterrupted)  # two epochs, 12 batches each
    for served in (0, 5, 12, 17):
        resumed = LengthGroupedBatches(lengths, 8, seed=3, start=served)
        assert (list(resumed) + list(resumed))[: 24 - served] == stream[served:], served
