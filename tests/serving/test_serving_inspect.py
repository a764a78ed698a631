"""Attention and probabilities of one forward pass, for every attention variant, without changing the model."""

from __future__ import annotations

import pytest
import torch

from scratchllm.serving.inspect import inspect

from tests.serving.serving_fixtures import tiny_model, tiny_tokenizer


@pytest.mark.parametrize("variant", [dict(), dict(position="rope", n_kv_head=2), dict(n_kv_head=1)])
def test_sdpa_attention_equals_the_explicit_paths_weights(variant: dict) -> None:
    tok = tiny_tokenizer()
    sdpa = tiny_model(tok, attention="sdpa", **variant)
    explicit = tiny_model(tok, attention="explicit", **variant)
    explicit.load_state_dict(sdpa.state_dict())
    ids = tok.encode("ROMEO: what light")
    seen = inspect(sdpa, ids)
    reference = torch.stack([m[0] for m in explicit.attention_maps(torch.tensor([ids]))])
    assert seen.attention.shape == (2, 4, len(ids), len(ids))  # one map per query head, GQA/MQA included
    torch.testing.assert_close(seen.attention, reference, rtol=0, atol=1e-6)
    torch.testing.assert_close(seen.attention.sum(-1), torch.ones(2, 4, len(ids)))  # rows are distributions
    assert seen.attention.triu(diagonal=1).abs().max() == 0  # causal: nothing after the query


def test_inspection_leaves_the_model_as_it_was() -> None:
    tok = tiny_tokenizer()
    model = tiny_model(tok, attention="sdpa")
    ids = torch.tensor([tok.encode("to be or not")])
    before = model(ids)[0]
    inspect(model, ids[0].tolist())
    assert all(b.attn.implementation == "sdpa" and not b.attn.keep_attention and b.attn.last_attention is None
               for b in model.blocks)
    torch.testing.assert_close(model(ids)[0], before, rtol=0, atol=0)


def test_probabilities_are_the_softmax_of_the_logits() -> None:
    tok = tiny_tokenizer()
    model = tiny_model(tok)
    ids = tok.encode("KING: my lord")
    seen = inspect(model, ids, attention=False)
    with torch.no_grad():
        probs = torch.softmax(model(torch.tensor([ids]))[0][0], dim=-1)
    assert seen.token_probability(0) is None
    for i in range(1, len(ids)):
        assert seen.token_probability(i) == pytest.approx(float(probs[i - 1, ids[i]]), abs=1e-6)
        top = seen.alternatives(i, 3)
        assert [t for t, _ in top] == torch.topk(probs[i - 1], 3).indices.tolist()
        assert top[0][1] >= top[1][1] >= top[2][1]
