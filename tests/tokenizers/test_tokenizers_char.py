"""Character tokenizer: vocabulary, unknown characters (error / replace), serialisation."""

from __future__ import annotations

import json
import pickle

import pytest

from scratchllm.errors import ConfigError, InputError
from scratchllm.tokenizers import CharTokenizer, build_tokenizer, load_tokenizer, tokenizer_from_dict


def test_from_text_sorted_vocabulary() -> None:
    tok = CharTokenizer.from_text("hello world")
    assert tok.chars == sorted(set("hello world"))
    assert tok.vocab_size == 8
    assert tok.eot_id is None
    assert tok.encode("hello") == [tok.chars.index(c) for c in "hello"]
    assert tok.decode(tok.encode("low rode"[:3])) == "low"


def test_round_trip_unicode() -> None:
    text = "Who's there?\r\n🎉 中文 e\u0301\n\n"
    tok = CharTokenizer.from_text(text)
    assert tok.decode(tok.encode(text)) == text
    assert tok.encode_batch([text, ""]) == [tok.encode(text), []]


def test_unknown_error_names_characters_and_fix() -> None:
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(InputError) as err:
        tok.encode("abxyz🎉")
    msg = str(err.value)
    for c in "xyz🎉":
        assert repr(c) in msg
    assert "tokenizer.unknown=replace" in msg
    assert "\n" not in msg


def test_unknown_error_lists_at_most_ten() -> None:
    tok = CharTokenizer.from_text("a")
    with pytest.raises(InputError) as err:
        tok.encode("bcdefghijklmnop")
    assert "'l'" not in str(err.value) and "..." in str(err.value)


def test_unknown_replace_uses_last_id() -> None:
    tok = CharTokenizer.from_text("abc", unknown="replace")
    assert tok.vocab_size == 4 and tok.unk_id == 3
    assert tok.encode("axb") == [0, 3, 1]
    assert tok.decode([0, 3, 1]) == "a\ufffdb"


def test_decode_out_of_range() -> None:
    with pytest.raises(InputError):
        CharTokenizer.from_text("ab").decode([2])


def test_bad_options() -> None:
    with pytest.raises(ConfigError):
        CharTokenizer(["a"], unknown="ignore")
    with pytest.raises(ConfigError):
        CharTokenizer(["ab"])
    with pytest.raises(ConfigError):
        CharTokenizer(["a", "a"])


@pytest.mark.parametrize("unknown", ["error", "replace"])
def test_dict_save_load_pickle(tmp_path, unknown: str) -> None:
    tok = CharTokenizer.from_text("The quick brown 🦊\n", unknown=unknown)
    d = tok.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert tokenizer_from_dict(d) == tok
    path = tmp_path / "tokenizer.json"
    tok.save(path)
    loaded = load_tokenizer(path)
    assert isinstance(loaded, CharTokenizer)
    assert loaded.chars == tok.chars and loaded.unknown == unknown
    assert loaded.encode("quick 🦊") == tok.encode("quick 🦊")
    assert pickle.loads(pickle.dumps(tok)) == tok


def test_factory_char_default_is_replace() -> None:
    tok = build_tokenizer("char", train_text="abc")
    assert tok.unknown == "replace"
    tok = build_tokenizer({"name": "char", "unknown": "error"}, train_text="abc")
    assert tok.unknown == "error"
