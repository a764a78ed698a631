"""Log-likelihoods and bits per byte against an independent computation: the same weights run by Hugging Face
transformers (``save_hf`` export), with the window of every token worked out from the stated policy."""

from __future__ import annotations

import math

import pytest
import torch

from scratchllm.errors import ConfigError, InputError
from scratchllm.evaluation.scoring import (
    TextScore, continuation_logprobs, encode_pair, rolling_windows, score_text, token_nlls,
)
from scratchllm.interop.hf import save_hf
from scratchllm.tokenizers import CharTokenizer, GPT2Tokenizer
from tests.evaluation.conftest import random_gpt

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A random GPT-2-shaped model with a 40-id vocabulary and context 16, and the same weights in transformers."""
    model = random_gpt(40, context_length=16)
    folder = save_hf(model, tmp_path_factory.mktemp("hf") / "m")
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    return model, hf


def hf_token_nll(hf, seq: list[int], target: int, start: int) -> float:
    """NLL of seq[target + 1] given seq[start : target + 1], by transformers."""
    with torch.no_grad():
        logits = hf(torch.tensor([seq[start : target + 1]])).logits[0, -1].double()
    return float(-torch.log_softmax(logits, -1)[seq[target + 1]])


def window_start(target: int, context: int, stride: int, n_targets: int) -> int:
    """The policy, stated per token: targets < context are read from position 0; later ones belong to the window
    ending at the first ``context + k*stride`` past them (or at the text's end), which starts ``context`` positions
    earlier."""
    if target < context:
        return 0
    end = min(context + stride * math.ceil((target + 1 - context) / stride), n_targets)
    return end - context


@pytest.mark.parametrize("stride", [16, 5, 1])
def test_sliding_window_nll_matches_transformers(pair, stride):
    model, hf = pair
    torch.manual_seed(1)
    seq = torch.randint(0, 40, (45,)).tolist()
    ours = token_nlls(model, seq[1:], prefix=seq[0], stride=stride, batch_size=3)
    ref = [hf_token_nll(hf, seq, j, window_start(j, 16, stride, 44)) for j in range(len(seq) - 1)]
    assert ours.shape == (44,)
    torch.testing.assert_close(ours.double(), torch.tensor(ref, dtype=torch.float64), atol=1e-4, rtol=1e-4)


def test_every_token_is_scored_once():
    for n, context, stride in [(1, 8, 8), (7, 8, 3), (8, 8, 8), (9, 8, 8), (30, 8, 3), (30, 8, 1)]:
        windows = rolling_windows(n, context, stride)
        covered = [t for start, end, first in windows for t in range(first, end)]
        assert covered == list(range(n))
        assert all(end - start <= context for start, end, _ in windows)


def test_bits_per_byte_by_hand(pair):
    """A char text without an end-of-text id: the first character is context only. "café au lait\\n" has 13
    characters and 14 UTF-8 bytes (é is two); 12 tokens and 13 bytes are scored."""
    model, hf = pair
    chars = sorted(set("café au lait\n"))
    tok = CharTokenizer(chars)
    text = "café au lait\n"
    score = score_text(model, tok, text, stride=16)
    assert (score.tokens, score.bytes) == (12, 13)
    assert score.bits_per_byte == pytest.approx(score.loss * 12 / (13 * math.log(2)), rel=1e-12)
    seq = tok.encode(text)
    ref = sum(hf_token_nll(hf, seq, j, 0) for j in range(12))
    assert score.nll == pytest.approx(ref, rel=1e-4)
    assert score.perplexity == pytest.approx(math.exp(ref / 12), rel=1e-4)


def test_bits_per_byte_with_end_of_text_scores_every_byte():
    """GPT-2's tokenizer has <|endoftext|>: it starts the document, so every token and every byte is scored."""
    tok = GPT2Tokenizer()
    model = random_gpt(tok.vocab_size, context_length=8, n_embd=16, n_layer=1)
    text = "Naïve cafés, 1,000 years on."
    score = score_text(model, tok, text, stride=4)
    assert score.tokens == len(tok.encode(text))
    assert score.bytes == len(text.encode("utf-8"))
    total = TextScore() + score + score
    assert total.bits_per_byte == pytest.approx(score.bits_per_byte)


def test_continuation_logprobs_match_transformers(pair):
    model, hf = pair
    torch.manual_seed(2)
    pairs = [(torch.randint(0, 40, (n,)).tolist(), torch.randint(0, 40, (m,)).tolist())
             for n, m in [(3, 2), (10, 1), (20, 4), (1, 5)]]  # (20, 4) is cut from the left to 17 tokens
    ours = continuation_logprobs(model, pairs, batch_size=3)
    for (ctx, cont), got in zip(pairs, ours):
        whole = (ctx + cont)[-17:]
        with torch.no_grad():
            logp = torch.log_softmax(hf(torch.tensor([whole[:-1]])).logits[0].double(), -1)
        n = len(cont)
        picked = logp[-n:].gather(-1, torch.tensor(cont)[:, None])[:, 0]
        assert got.logprob == pytest.approx(float(picked.sum()), abs=1e-4)
        assert got.greedy == bool((logp[-n:].argmax(-1) == torch.tensor(cont)).all())
        assert got.tokens == n


def test_greedy_flag_is_true_for_the_models_own_choice(pair):
    model, _ = pair
    ctx = [1, 2, 3]
    with torch.no_grad():
        best = int(model(torch.tensor([ctx]))[0][0, -1].argmax())
    assert continuation_logprobs(model, [(ctx, [best])])[0].greedy


def test_encode_pair_moves_trailing_whitespace_like_lm_eval():
    tok = GPT2Tokenizer()
    ctx, cont = encode_pair(tok, "Hello ", "world")
    assert ctx == tok.encode("Hello") and cont == tok.encode(" world")
    ctx, cont = encode_pair(tok, "", "Hi")
    assert ctx == [tok.eot_id] and cont == tok.encode("Hi")


def test_errors_are_one_line():
    tok = CharTokenizer(list("ab"))
    with pytest.raises(InputError, match="end-of-text"):
        encode_pair(tok, "", "a")
    with pytest.raises(InputError, match="empty continuation"):
        encode_pair(tok, "a", "")
    with pytest.raises(ConfigError, match="stride"):
        token_nlls(random_gpt(4, context_length=8), [1, 2, 3], stride=9)


def test_a_continuation_longer_than_the_context_slides(pair):
    """Each later window scores half a context of new tokens, every one after at least half a context of text."""
    model, hf = pair
    torch.manual_seed(3)
    ctx, cont = torch.randint(0, 40, (5,)).tolist(), torch.randint(0, 40, (30,)).tolist()
    got = continuation_logprobs(model, [(ctx, cont)])[0]
    seq = ctx + cont
    ref = 0.0
    for j in range(4, 34):  # target j predicts seq[j + 1]; windows end at 4 + 8k (or the text's end)
        end = min(4 + 8 * math.ceil((j + 1 - 4) / 8), 34)
        ref += hf_token_nll(hf, seq, j, max(0, end - 16))
    assert got.tokens == 30 and got.logprob == pytest.approx(-ref, abs=1e-4)
