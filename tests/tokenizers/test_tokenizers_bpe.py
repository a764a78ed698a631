"""Trained byte-level BPE: training (against Hugging Face tokenizers' BPE), the tiktoken file format, the dict
embedded in checkpoints, build/load by spec and path, and errors that name the fix."""

from __future__ import annotations

import base64
import json
import logging
import pickle
import re

import pytest
import tiktoken

from scratchllm.errors import ConfigError, DataError, InputError
from scratchllm.tokenizers import (
    GPT4_PATTERN,
    BPETokenizer,
    BPETrainConfig,
    build_tokenizer,
    load_tokenizer,
    normalize_spec,
    tokenizer_from_dict,
    train_bpe,
)
from scratchllm.tokenizers.gpt2 import GPT2_PATTERN
from scratchllm.tokenizers.tiktoken_base import format_ranks, parse_ranks


def test_vocabulary_layout(small_bpe: BPETokenizer) -> None:
    tok = small_bpe
    assert tok.name == "bpe" and tok.label == "small"
    assert tok.vocab_size == 512 and tok.n_ranks == 510
    assert tok.tokens[:256] == [bytes([b]) for b in range(256)]  # ids 0..255: the single bytes, in order
    assert tok.special_tokens == {"<|endoftext|>": 510, "<|pad|>": 511}
    assert tok.eot_id == 510
    assert tok.pattern == GPT4_PATTERN
    # every merged token is the concatenation of two earlier tokens (the BPE merge invariant)
    earlier: set[bytes] = set(tok.tokens[:256])
    for t in tok.tokens[256:]:
        assert any(t[:k] in earlier and t[k:] in earlier for k in range(1, len(t))), t
        earlier.add(t)
    assert b" the" in earlier and b"\n\n" in earlier


def test_pattern_is_tiktokens_cl100k_pattern() -> None:
    openai_public = pytest.importorskip("tiktoken_ext.openai_public")
    source = open(openai_public.__file__, encoding="utf-8").read()
    assert f'r"""{GPT4_PATTERN}"""' in source.split("def cl100k_base")[1].split("def ")[0]


def test_compresses_better_than_bytes(small_bpe: BPETokenizer, plays_text: list[str]) -> None:
    text = plays_text[0][:20000]
    assert len(text.encode()) / len(small_bpe.encode(text)) > 2.0


def test_cut_after_newline_keeps_ids(small_bpe: BPETokenizer, plays_text: list[str]) -> None:
    """Data preparation encodes long documents in chunks cut after a newline followed by a non-space; with
    the GPT-4 pattern that point is always a piece boundary, so chunked ids equal whole-document ids."""
    text = plays_text[1][:30000] + "\n\n\n  indented\n\tx\r\ny.\nz"
    cuts = [m.end() for m in re.finditer(r"\n(?=\S)", text)]
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
    assert sum((small_bpe.encode(p) for p in pieces), []) == small_bpe.encode(text)


def _hf_byte_tokens(hf_tokenizer) -> set[bytes]:
    """The vocabulary of a HF ByteLevel BPE as raw bytes (undoing GPT-2's printable byte alphabet)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    to_byte = {chr(b): b for b in printable}
    extra = 0
    for b in range(256):
        if b not in printable:
            to_byte[chr(256 + extra)] = b
            extra += 1
    vocab = json.loads(hf_tokenizer.to_str())["model"]["vocab"]
    return {bytes(to_byte[c] for c in token) for token in vocab if not token.startswith("<|")}


def hf_bpe(texts: list[str], vocab_size: int, special_tokens: list[str]):
    """Hugging Face tokenizers' byte-level BPE, trained on ``texts``: the reference implementation."""
    hf = pytest.importorskip("tokenizers")
    tok = hf.Tokenizer(hf.models.BPE())
    tok.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = hf.decoders.ByteLevel()
    trainer = hf.trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special_tokens, show_progress=False,
                                     initial_alphabet=hf.pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return tok


def test_same_merges_as_huggingface_with_gpt2_pattern(plays_text: list[str]) -> None:
    """With the same split pattern (HF's ByteLevel pre-tokeniser is GPT-2's regex), rustbpe and HF's BpeTrainer
    learn the same vocabulary, and compress unseen text identically."""
    texts = plays_text[:2]
    ours = train_bpe(texts, BPETrainConfig(vocab_size=512, pattern=GPT2_PATTERN))
    ref = hf_bpe(texts, 512, ["<|endoftext|>"])
    assert ref.get_vocab_size() == ours.vocab_size == 512
    assert set(ours.tokens) == _hf_byte_tokens(ref)
    held_out = plays_text[2]
    assert len(ours.encode(held_out)) == len(ref.encode(held_out).ids)


def test_to_dict_embeds_everything(small_bpe: BPETokenizer) -> None:
    d = small_bpe.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert set(d) == {"name", "label", "pattern", "special_tokens", "tokens", "fingerprint"}
    assert len(d["tokens"].split()) == small_bpe.n_ranks
    again = tokenizer_from_dict(d)
    assert isinstance(again, BPETokenizer) and again == small_bpe
    text = "Now is the winter of our discontent 🎭"
    assert again.encode(text) == small_bpe.encode(text)
    assert pickle.loads(pickle.dumps(small_bpe)).encode(text) == small_bpe.encode(text)


def test_to_dict_corruption_is_detected(small_bpe: BPETokenizer) -> None:
    d = small_bpe.to_dict()
    tokens = d["tokens"].split()
    tokens[300], tokens[301] = tokens[301], tokens[300]  # two merges swapped: different ids
    with pytest.raises(DataError, match="fingerprint"):
        tokenizer_from_dict({**d, "tokens": " ".join(tokens)})
    with pytest.raises(DataError, match="tokens"):
        tokenizer_from_dict({**d, "tokens": "not*base64"})
    with pytest.raises(DataError, match="256 single-byte"):
        tokenizer_from_dict({**d, "tokens": " ".join(tokens[1:]), "fingerprint": None})


def test_saved_folder_is_tiktoken_format(small_bpe: BPETokenizer, small_bpe_dir, monkeypatch) -> None:
    ranks_file, meta_file = small_bpe_dir / "vocab.tiktoken", small_bpe_dir / "bpe.json"
    lines = ranks_file.read_bytes().splitlines()
    assert len(lines) == small_bpe.n_ranks
    assert lines[0] == b"AA== 0" and lines[65] == base64.b64encode(b"A") + b" 65"
    # tiktoken's own loader reads it (caching off), and an Encoding from it gives our ids
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")
    ranks = tiktoken.load.load_tiktoken_bpe(str(ranks_file))
    meta = json.loads(meta_file.read_text())
    assert meta["format"] == "scratchllm-bpe" and meta["pattern"] == GPT4_PATTERN
    assert meta["special_tokens"] == {"<|endoftext|>": 510, "<|pad|>": 511}
    assert meta["vocab_size"] == 512 and meta["fingerprint"] == small_bpe.fingerprint
    enc = tiktoken.Encoding("check", pat_str=meta["pattern"], mergeable_ranks=ranks,
                            special_tokens=meta["special_tokens"])
    text = "To be, or not to be: that is the question.\r\n"
    assert enc.encode_ordinary(text) == small_bpe.encode(text)


def test_load_folder_by_spec_and_path(small_bpe: BPETokenizer, small_bpe_dir, tmp_path) -> None:
    by_spec = build_tokenizer({"name": "bpe", "path": str(small_bpe_dir)})
    by_string = build_tokenizer(str(small_bpe_dir))
    by_load = load_tokenizer(small_bpe_dir)
    assert by_spec == by_string == by_load == small_bpe
    # a tokenizer.json written by save() loads by path too, and so does a folder holding one
    small_bpe.save(tmp_path / "tokenizer.json")
    assert build_tokenizer(str(tmp_path / "tokenizer.json")) == small_bpe
    assert build_tokenizer(str(tmp_path)) == small_bpe
    assert load_tokenizer(tmp_path) == small_bpe


def test_dictconfig_spec_and_missing_path(small_bpe_dir) -> None:
    omegaconf = pytest.importorskip("omegaconf")
    spec = omegaconf.OmegaConf.create({"name": "bpe", "path": str(small_bpe_dir)})
    assert build_tokenizer(spec).vocab_size == 512
    with pytest.raises(ConfigError, match=r"tokenizer.path must be set.*scratchllm.tokenizer train"):
        build_tokenizer(omegaconf.OmegaConf.create({"name": "bpe", "path": "???"}))
    with pytest.raises(ConfigError, match="tokenizer.path"):
        build_tokenizer("bpe")


def test_cache_key_follows_the_folder_content(plays_text, tmp_path) -> None:
    out = tmp_path / "tok"
    train_bpe(plays_text[:1], BPETrainConfig(vocab_size=300)).save_dir(out)
    key1 = normalize_spec({"name": "bpe", "path": str(out)})
    assert key1 == normalize_spec(str(out)) and len(key1["fingerprint"]) == 64
    train_bpe(plays_text[:1], BPETrainConfig(vocab_size=310)).save_dir(out)  # retrained in place
    key2 = normalize_spec({"name": "bpe", "path": str(out)})
    assert key2["fingerprint"] != key1["fingerprint"]
    with pytest.raises(DataError, match="changed"):
        build_tokenizer(key1)


def test_bad_specs_name_the_fix(small_bpe_dir, tmp_path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        build_tokenizer({"name": "bpe", "path": str(tmp_path / "nope")})
    with pytest.raises(DataError, match="no tokenizer at"):
        build_tokenizer(str(tmp_path / "nope"))
    with pytest.raises(DataError, match="holds no tokenizer"):
        build_tokenizer(str(tmp_path))
    with pytest.raises(ConfigError, match="come from the trained folder"):
        build_tokenizer({"name": "bpe", "path": str(small_bpe_dir), "pattern": r"\w+"})
    with pytest.raises(ConfigError, match="no option"):
        build_tokenizer({"name": "bpe", "path": str(small_bpe_dir), "vocab_size": 9})


def test_corrupt_files(small_bpe_dir, tmp_path) -> None:
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(small_bpe_dir, bad)
    lines = (bad / "vocab.tiktoken").read_bytes().splitlines(keepends=True)
    (bad / "vocab.tiktoken").write_bytes(b"".join(lines[:300] + lines[301:]))  # a rank missing
    with pytest.raises(DataError, match="corrupt"):
        load_tokenizer(bad)
    (bad / "vocab.tiktoken").write_bytes(b"".join(lines[:299] + [lines[300], lines[299]] + lines[301:]))
    assert load_tokenizer(bad).n_ranks == 510  # reordered lines are fine: the ranks say where tokens go
    (bad / "bpe.json").write_text("{oops")
    with pytest.raises(DataError, match="not valid JSON"):
        load_tokenizer(bad)
    with pytest.raises(DataError, match="corrupt"):
        parse_ranks(b"QQ== 0\nQg== 0\n", "x")
    with pytest.raises(DataError, match="base64"):
        parse_ranks(b"QQ== zero\n", "x")
    assert parse_ranks(format_ranks([b"a", b"bc"]), "x") == [b"a", b"bc"]


def test_decode_errors(small_bpe: BPETokenizer) -> None:
    with pytest.raises(InputError, match="outside the bpe vocabulary"):
        small_bpe.decode([512])
    with pytest.raises(InputError, match="integers"):
        small_bpe.decode(["x"])
    assert small_bpe.decode([small_bpe.encode("é")[0]]) == "\ufffd"  # half a character: U+FFFD, no crash


def test_train_config_validation() -> None:
    assert BPETrainConfig(special_tokens=["<|pad|>"]).special_tokens == ["<|endoftext|>", "<|pad|>"]
    assert BPETrainConfig(special_tokens="<|pad|>").special_tokens == ["<|endoftext|>", "<|pad|>"]
    assert BPETrainConfig(vocab_size=4096).n_merges == 4096 - 256 - 1
    with pytest.raises(ConfigError, match="between 257"):
        BPETrainConfig(vocab_size=256)
    with pytest.raises(ConfigError, match="not an integer"):
        BPETrainConfig(vocab_size="32k")
    with pytest.raises(ConfigError, match="repeats"):
        BPETrainConfig(special_tokens=["<|a|>", "<|a|>"])


def test_train_edge_cases(caplog) -> None:
    with pytest.raises(DataError, match="empty"):
        train_bpe(["", ""], BPETrainConfig(vocab_size=300))
    with caplog.at_level(logging.WARNING):
        tok = train_bpe(["abab abab"], BPETrainConfig(vocab_size=1000))
    assert tok.vocab_size < 1000 and "ran out of pairs" in caplog.text
    assert tok.decode(tok.encode("abab 🎉")) == "abab 🎉"
    with pytest.raises(ConfigError, match="does not compile"):
        train_bpe(["abc"], BPETrainConfig(vocab_size=300, pattern="("))

    def failing():
        yield "some text"
        raise DataError("cannot read x.txt; check the file")

    with pytest.raises(DataError, match="cannot read"):
        train_bpe(failing(), BPETrainConfig(vocab_size=300))
