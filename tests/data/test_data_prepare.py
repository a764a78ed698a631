"""prepare_corpus: shard contents, document joining, caching (reuse, no half caches) and corruption."""

from __future__ import annotations

import numpy as np
import pytest

from scratchllm.data import TextFiles, open_shard, prepare_corpus
from scratchllm.data.folders import MANIFEST, TOKENIZER_FILE
from scratchllm.data.tokenize import split_for_threads
from scratchllm.errors import DataError
from scratchllm.tokenizers import CharTokenizer, GPT2Tokenizer


class ListCorpus:
    """A corpus given inline (tests only)."""

    def __init__(self, train: list[str], val: list[str]) -> None:
        self.train, self.val = train, val

    def splits(self) -> dict[str, list[str]]:
        return {"train": list(self.train), "val": list(self.val)}

    def fingerprint(self) -> str:
        return repr((self.train, self.val))

    def __repr__(self) -> str:
        return "ListCorpus()"


def _tokens(paths) -> list[int]:
    return np.concatenate([np.asarray(open_shard(p)[1]) for p in paths]).tolist()


def test_char_shards_and_tokenizer(tmp_path) -> None:
    corpus = ListCorpus(["hello world", "second doc"], ["led held"])
    data = prepare_corpus(corpus, "char", tmp_path)
    tok = data.tokenizer
    assert isinstance(tok, CharTokenizer)
    assert set(tok.chars) == set("hello world" + "second doc" + "\n")  # fitted on train (+ separator) only
    assert tok.decode(_tokens(data.train)) == "hello world\n\nsecond doc"
    assert tok.decode(_tokens(data.val)) == "led held"
    assert data.train_tokens == len("hello world\n\nsecond doc") and data.val_tokens == len("led held")
    assert (data.directory / MANIFEST).is_file() and (data.directory / TOKENIZER_FILE).is_file()
    assert [p.name for p in data.train] == ["train_000000.bin"]
    info, _ = open_shard(data.train[0])
    assert info.tokenizer == "char" and info.vocab_size == tok.vocab_size


def test_char_val_only_characters(tmp_path) -> None:
    corpus = ListCorpus(["abc abc"], ["abz!"])
    data = prepare_corpus(corpus, "char", tmp_path)  # default unknown="replace": unseen -> <unk>
    assert _tokens(data.val)[-2:] == [data.tokenizer.unk_id] * 2
    with pytest.raises(DataError) as err:
        prepare_corpus(corpus, {"name": "char", "unknown": "error"}, tmp_path / "strict")
    assert "'z'" in str(err.value) and "tokenizer.unknown=replace" in str(err.value)
    assert not list((tmp_path / "strict").iterdir())  # the failed build left nothing behind


def test_gpt2_documents_end_with_eot(tmp_path) -> None:
    docs = ["First doc.\nWith two lines.", "Second <|endoftext|> doc"]
    data = prepare_corpus(ListCorpus(docs, ["val text"]), {"name": "gpt2"}, tmp_path)
    tok = GPT2Tokenizer()
    assert _tokens(data.train) == tok.encode(docs[0]) + [50256] + tok.encode(docs[1]) + [50256]
    assert _tokens(data.val) == tok.encode("val text") + [50256]


def test_gpt2_chunking_is_exact() -> None:
    text = "".join(f"Line {i}: {'word ' * (i % 7)}\n{'  ' if i % 5 == 0 else ''}\n\t x'll\n" for i in range(400))
    chunks = split_for_threads(text, chunk_chars=200)
    assert len(chunks) > 10 and "".join(chunks) == text
    tok = GPT2Tokenizer()
    assert sum(tok.encode_batch(chunks), []) == tok.encode(text)


def test_many_shards(tmp_path) -> None:
    docs = [f"document number {i} " * 5 for i in range(20)]
    data = prepare_corpus(ListCorpus(docs, ["v" * 50]), "char", tmp_path, shard_tokens=300)
    assert len(data.train) > 3
    infos = [open_shard(p)[0] for p in data.train]
    assert all(i.n_tokens == 300 for i in infos[:-1]) and 0 < infos[-1].n_tokens <= 300
    assert data.tokenizer.decode(_tokens(data.train)) == "\n\n".join(docs)


def test_cache_is_reused(tmp_path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        (src / f"{i}.txt").write_text(f"text file {i} " * 20)
    corpus = TextFiles(str(src), val_fraction=0.25)
    first = prepare_corpus(corpus, "char", tmp_path / "cache")
    stamps = {p: p.stat().st_mtime_ns for p in first.directory.iterdir()}
    second = prepare_corpus(TextFiles(str(src), val_fraction=0.25), "char", tmp_path / "cache")
    assert second.directory == first.directory
    assert {p: p.stat().st_mtime_ns for p in second.directory.iterdir()} == stamps  # nothing rewritten
    assert second.tokenizer == first.tokenizer and second.train == first.train
    other = prepare_corpus(corpus, "gpt2", tmp_path / "cache")  # another tokenizer: another folder
    assert other.directory != first.directory
    (src / "0.txt").write_text("changed content")  # another content: another folder
    assert prepare_corpus(TextFiles(str(src), val_fraction=0.25), "char", tmp_path / "cache").directory not in (
        first.directory, other.directory)
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]  # no temp folders


def test_incomplete_cache_is_rebuilt(tmp_path) -> None:
    corpus = ListCorpus(["some train text"], ["val"])
    first = prepare_corpus(corpus, "char", tmp_path)
    (first.directory / MANIFEST).unlink()  # as if a build had died before finishing
    again = prepare_corpus(corpus, "char", tmp_path)
    assert (again.directory / MANIFEST).is_file() and _tokens(again.train) == _tokens(first.train)


def test_empty_split_is_an_error(tmp_path) -> None:
    with pytest.raises(DataError, match="val split .* is empty"):
        prepare_corpus(ListCorpus(["train only"], []), "char", tmp_path)
    with pytest.raises(DataError, match="train split .* is empty"):
        prepare_corpus(ListCorpus(["", ""], ["val"]), "char", tmp_path)


def test_corrupt_cached_shard(tmp_path) -> None:
    data = prepare_corpus(ListCorpus(["abcdefgh" * 100], ["abc" * 10]), "char", tmp_path)
    raw = bytearray(data.train[0].read_bytes())
    raw[-1] ^= 0xFF
    data.train[0].write_bytes(bytes(raw))
    with pytest.raises(DataError) as err:
        open_shard(data.train[0])
    # open_shard alone cannot know what wrote the folder: the data module names the exact fix
    assert f"rebuild {data.directory}" in str(err.value) and "checksum mismatch" in str(err.value)
