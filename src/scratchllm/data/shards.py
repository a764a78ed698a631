"""The one on-disk token format: a small self-describing header, then the raw token array.

Layout of a shard file::

    b"SLLMTOK\\0"            8 bytes of magic (is this one of ours?)
    version                  uint32 little-endian (FORMAT_VERSION)
    header_len               uint32 little-endian: length of the JSON block that follows
    JSON header              utf-8: tokenizer, vocab_size, dtype, n_tokens, checksum
    zero padding             up to the next multiple of ALIGN bytes
    tokens                   n_tokens little-endian uint16 (vocab <= 65535) or uint32

The token array starts at an aligned offset so ``np.memmap`` can map it directly: training reads windows
straight from the page cache without loading the corpus into RAM. The checksum (blake2b over the token
bytes) catches a file that was truncated or damaged after it was written; shards are written to a
temporary name and renamed, so a crash mid-write never leaves a plausible-looking partial shard.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from scratchllm.errors import DataError

MAGIC = b"SLLMTOK\0"
FORMAT_VERSION = 1
ALIGN = 64
_PREFIX = struct.Struct("<8sII")  # magic, version, header_len
_HASH_CHUNK = 1 << 24  # bytes per hashing step: bounded memory on 100M-token shards


@dataclass(frozen=True)
class ShardInfo:
    """What a shard's header says about it (``offset``: byte position where the tokens start)."""

    path: Path
    tokenizer: str
    vocab_size: int
    dtype: str
    n_tokens: int
    checksum: str
    offset: int


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """Smallest unsigned dtype that holds every id: uint16 up to 65,535 ids, else uint32."""
    return np.dtype("<u2") if vocab_size <= 65535 else np.dtype("<u4")


def _checksum(data: np.ndarray) -> str:
    h = hashlib.blake2b(digest_size=32)
    flat = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    for i in range(0, flat.size, _HASH_CHUNK):
        h.update(flat[i : i + _HASH_CHUNK])
    return "blake2b-256:" + h.hexdigest()


class ShardError(DataError):
    """A shard that is missing or damaged. Who opened it knows how its folder is rebuilt (``rebuild``
    replaces the generic fix): a data cache by deleting it, a prepared folder only by preparing it again."""

    def __init__(self, path: Path, why: str) -> None:
        self.path, self.why = path, why
        super().__init__(self.rebuild(f"rebuild {path.parent} (a data cache: delete it; a prepared folder: run "
                                      "python -m scratchllm.prepare again)"))

    def rebuild(self, fix: str) -> str:
        """The one-line message with ``fix`` as the way out."""
        return f"shard {self.path} is {self.why}; {fix}"


def _corrupt(path: Path, why: str) -> ShardError:
    return ShardError(path, f"corrupt ({why})")


def write_shard(
    path: str | os.PathLike[str],
    tokens: np.ndarray | Sequence[int],
    *,
    tokenizer: str,
    vocab_size: int,
) -> ShardInfo:
    """Write ``tokens`` as one shard at ``path`` (atomically: temp file in the same folder, then rename)."""
    path = Path(path)
    dtype = dtype_for_vocab(vocab_size)
    arr = np.asarray(tokens)
    if arr.ndim != 1:
        raise DataError(f"a shard holds a 1-D token array, got shape {arr.shape}")
    if arr.size and (not np.issubdtype(arr.dtype, np.integer) or int(arr.min()) < 0 or int(arr.max()) >= vocab_size):
        raise DataError(f"tokens for shard {path} must be integers in [0, {vocab_size}); the tokenizer and "
                        "vocab_size disagree")
    data = arr.astype(dtype, copy=False)
    header = {
        "tokenizer": tokenizer,
        "vocab_size": int(vocab_size),
        "dtype": dtype.name,
        "n_tokens": int(data.size),
        "checksum": _checksum(data),
    }
    blob = json.dumps(header, sort_keys=True).encode("utf-8")
    offset = -(-(_PREFIX.size + len(blob)) // ALIGN) * ALIGN
    prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(blob)) + blob
    prefix += b"\0" * (offset - len(prefix))

    path.parent.mkdir(parents=True, exist_ok=True)
    # a unique temp name opened with "xb" (not mkstemp, whose 0600 mode would survive the rename)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "xb") as f:
            f.write(prefix)
            np.ascontiguousarray(data).tofile(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return ShardInfo(path, tokenizer, int(vocab_size), dtype.name, int(data.size), header["checksum"], offset)


def read_shard_info(path: str | os.PathLike[str]) -> ShardInfo:
    """Parse and sanity-check a shard's header (does not read the tokens)."""
    path = Path(path)
    if not path.is_file():
        raise ShardError(path, "missing (the file does not exist)")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(_PREFIX.size)
        if len(head) < _PREFIX.size:
            raise _corrupt(path, "truncated header")
        magic, version, header_len = _PREFIX.unpack(head)
        if magic != MAGIC:
            raise _corrupt(path, "bad magic bytes: not a scratchllm shard")
        if version != FORMAT_VERSION:
            raise _corrupt(path, f"format version {version}, this code reads {FORMAT_VERSION}")
        blob = f.read(header_len)
    if len(blob) < header_len:
        raise _corrupt(path, "truncated header")
    try:
        h = json.loads(blob.decode("utf-8"))
        dtype = np.dtype(h["dtype"]).newbyteorder("<")
        info = ShardInfo(
            path=path,
            tokenizer=str(h["tokenizer"]),
            vocab_size=int(h["vocab_size"]),
            dtype=dtype.name,
            n_tokens=int(h["n_tokens"]),
            checksum=str(h["checksum"]),
            offset=-(-(_PREFIX.size + header_len) // ALIGN) * ALIGN,
        )
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise _corrupt(path, f"unreadable header: {e}") from e
    expected = info.offset + info.n_tokens * dtype.itemsize
    if size != expected:
        why = "truncated" if size < expected else "trailing bytes"
        raise _corrupt(path, f"{why}: {size} bytes, header promises {expected}")
    return info


def open_shard(path: str | os.PathLike[str], *, verify: bool = True) -> tuple[ShardInfo, np.ndarray]:
    """Header and a read-only memory map of the tokens; ``verify`` re-hashes them against the checksum."""
    info = read_shard_info(path)
    dtype = np.dtype(info.dtype).newbyteorder("<")
    if info.n_tokens == 0:  # numpy cannot map zero bytes
        tokens: np.ndarray = np.zeros(0, dtype=dtype)
    else:
        tokens = np.memmap(info.path, dtype=dtype, mode="r", offset=info.offset, shape=(info.n_tokens,))
    if verify and _checksum(tokens) != info.checksum:
        raise _corrupt(info.path, "checksum mismatch")
    return info, tokens
