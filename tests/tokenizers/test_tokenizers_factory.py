"""build_tokenizer: names, mappings (incl. Hydra DictConfig), errors."""

from __future__ import annotations

import pytest

from scratchllm.errors import ConfigError, DataError
from scratchllm.tokenizers import (
    CharTokenizer,
    GPT2Tokenizer,
    build_tokenizer,
    load_tokenizer,
    tokenizer_from_dict,
    tokenizer_names,
)


def test_names() -> None:
    assert {"char", "gpt2"} <= set(tokenizer_names())
    assert isinstance(build_tokenizer("gpt2"), GPT2Tokenizer)
    assert isinstance(build_tokenizer({"name": "char"}, train_text="xy"), CharTokenizer)


def test_dictconfig_spec() -> None:
    omegaconf = pytest.importorskip("omegaconf")
    spec = omegaconf.OmegaConf.create({"name": "char", "unknown": "error"})
    tok = build_tokenizer(spec, train_text="hello")
    assert isinstance(tok, CharTokenizer) and tok.unknown == "error"


def test_unknown_name_lists_choices() -> None:
    with pytest.raises(ConfigError) as err:
        build_tokenizer("sentencepiece")
    assert "char" in str(err.value) and "gpt2" in str(err.value)


def test_unknown_option_rejected() -> None:
    with pytest.raises(ConfigError, match="no option"):
        build_tokenizer({"name": "gpt2", "unknown": "replace"})


def test_char_needs_text() -> None:
    with pytest.raises(ConfigError, match="train_text"):
        build_tokenizer("char")


def test_from_dict_dispatch() -> None:
    assert isinstance(tokenizer_from_dict({"name": "gpt2"}), GPT2Tokenizer)
    tok = tokenizer_from_dict({"name": "char", "chars": "ab", "unknown": "error"})
    assert tok.encode("ba") == [1, 0]


def test_load_missing_or_bad_file(tmp_path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_tokenizer(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_tokenizer(bad)
