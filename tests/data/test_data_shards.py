"""Shard format: round trip, dtype choice, and corruption detection (flipped byte, truncation, bad magic)."""

from __future__ import annotations

import numpy as np
import pytest

from scratchllm.data.shards import ALIGN, dtype_for_vocab, open_shard, read_shard_info, write_shard
from scratchllm.errors import DataError


@pytest.mark.parametrize("vocab_size,dtype", [(65, "uint16"), (50257, "uint16"), (65535, "uint16"),
                                              (65536, "uint32"), (100277, "uint32")])
def test_dtype_choice(vocab_size: int, dtype: str) -> None:
    assert dtype_for_vocab(vocab_size).name == dtype


@pytest.mark.parametrize("vocab_size", [77, 50257, 200_000])
def test_round_trip(tmp_path, vocab_size: int) -> None:
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, vocab_size, size=12_345)
    tokens[:2] = [0, vocab_size - 1]
    path = tmp_path / "sub" / "train_000000.bin"
    info = write_shard(path, tokens, tokenizer="test", vocab_size=vocab_size)
    assert info.n_tokens == tokens.size and info.offset % ALIGN == 0
    assert read_shard_info(path) == info
    again, data = open_shard(path)
    assert again == info
    assert isinstance(data, np.memmap) and data.dtype.name == info.dtype
    np.testing.assert_array_equal(np.asarray(data), tokens)
    assert path.stat().st_size == info.offset + tokens.size * data.dtype.itemsize
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind


def test_list_input_and_empty(tmp_path) -> None:
    info = write_shard(tmp_path / "a.bin", [3, 1, 2], tokenizer="char", vocab_size=4)
    assert open_shard(tmp_path / "a.bin")[1].tolist() == [3, 1, 2]
    assert info.tokenizer == "char" and info.vocab_size == 4
    write_shard(tmp_path / "e.bin", [], tokenizer="char", vocab_size=4)
    assert open_shard(tmp_path / "e.bin")[1].size == 0


def test_rejects_out_of_range_tokens(tmp_path) -> None:
    with pytest.raises(DataError):
        write_shard(tmp_path / "x.bin", [0, 4], tokenizer="char", vocab_size=4)
    with pytest.raises(DataError):
        write_shard(tmp_path / "x.bin", [-1], tokenizer="char", vocab_size=4)


def _one_line_fix(err: pytest.ExceptionInfo, path) -> str:
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and f"rebuild {path.parent}" in msg
    return msg


def test_flipped_byte_is_detected(tmp_path) -> None:
    path = tmp_path / "shard.bin"
    info = write_shard(path, np.arange(1000) % 50, tokenizer="char", vocab_size=50)
    raw = bytearray(path.read_bytes())
    raw[info.offset + 777] ^= 0x01
    path.write_bytes(bytes(raw))
    open_shard(path, verify=False)  # header is fine
    with pytest.raises(DataError) as err:
        open_shard(path)
    assert "checksum mismatch" in _one_line_fix(err, path)


def test_truncation_is_detected(tmp_path) -> None:
    path = tmp_path / "shard.bin"
    write_shard(path, np.arange(1000) % 50, tokenizer="char", vocab_size=50)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DataError) as err:
        open_shard(path)
    assert "truncated" in _one_line_fix(err, path)
    path.write_bytes(b"SLLM")
    with pytest.raises(DataError, match="truncated"):
        read_shard_info(path)


def test_bad_magic_is_detected(tmp_path) -> None:
    path = tmp_path / "shard.bin"
    write_shard(path, [1, 2, 3], tokenizer="char", vocab_size=50)
    path.write_bytes(b"NOTASHRD" + path.read_bytes()[8:])
    with pytest.raises(DataError) as err:
        read_shard_info(path)
    assert "magic" in _one_line_fix(err, path)


def test_missing_file(tmp_path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        open_shard(tmp_path / "none.bin")
