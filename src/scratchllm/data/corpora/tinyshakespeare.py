"""``TinyShakespeare``: the classic 1,115,394-character char-rnn file, for comparing with published numbers.

The file is not shipped. If ``path`` does not exist we try once to download it (short timeout), check its
sha256 and save it; offline, the error says where to put a copy. The split is nanoGPT's: the first 90% of
the characters train, the last 10% validate (one document each). With the checksum turned off
(``+data.corpus.sha256=null``) any file is taken, so it is read like ``TextFiles`` reads one: a binary file is
refused and undecodable bytes are replaced and counted (``scratchllm.textio``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from scratchllm.data.corpora.base import digest
from scratchllm.errors import DataError
from scratchllm.textio import SNIFF_BYTES, BinarySkips, binary_reason, decode_counting

log = logging.getLogger(__name__)

TINY_SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
TINY_SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
TRAIN_FRACTION = 0.9
DOWNLOAD_TIMEOUT_S = 10.0


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class TinyShakespeare:
    """The tinyshakespeare file at ``path`` (downloaded from ``url`` if absent), split 90/10 by characters."""

    def __init__(self, path: str, url: str = TINY_SHAKESPEARE_URL, sha256: str | None = TINY_SHAKESPEARE_SHA256):
        self.path = Path(os.path.expanduser(str(path)))
        self.url = url
        self.sha256 = sha256

    def _download(self) -> bytes:
        try:
            with urllib.request.urlopen(self.url, timeout=DOWNLOAD_TIMEOUT_S) as r:
                data = r.read()
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise DataError(
                f"tinyshakespeare is not at {self.path} and downloading {self.url} failed ({e}); "
                f"put the file there (sha256 {self.sha256}) or set data.corpus.path"
            ) from e
        if self.sha256 and _sha256(data) != self.sha256:
            raise DataError(f"the file downloaded from {self.url} has sha256 {_sha256(data)}, expected "
                            f"{self.sha256}; fix data.corpus.url or put the right file at {self.path}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.parent / f".{self.path.name}.{uuid.uuid4().hex}.tmp"
        try:
            with open(tmp, "xb") as f:
                f.write(data)
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return data

    def _bytes(self) -> bytes:
        if not self.path.is_file():
            return self._download()
        data = self.path.read_bytes()
        if self.sha256 and _sha256(data) != self.sha256:
            raise DataError(f"{self.path} has sha256 {_sha256(data)}, expected {self.sha256}; replace the file "
                            "or add +data.corpus.sha256=null to use it anyway")
        return data

    def text(self) -> str:
        data = self._bytes()
        reason = binary_reason(data[:SNIFF_BYTES], "utf-8", hint="data.corpus.path")
        if reason:  # one file and nothing else: the error
            skips = BinarySkips(option="data.corpus.path",
                                fix="point data.corpus.path at the tinyshakespeare text file (input.txt)")
            skips.add(self.path, reason)
            skips.check()
        text, bad = decode_counting(data, "utf-8", hint="data.corpus.path")
        if bad:
            log.warning("%s: %d undecodable byte sequence(s) replaced with U+FFFD (not UTF-8)", self.path, bad)
        return text

    def splits(self) -> dict[str, list[str]]:
        text = self.text()
        cut = int(len(text) * TRAIN_FRACTION)
        return {"train": [text[:cut]], "val": [text[cut:]]}

    def fingerprint(self) -> str:
        return digest({"corpus": "tiny_shakespeare", "content": _sha256(self._bytes()),
                       "train_fraction": TRAIN_FRACTION})

    def __repr__(self) -> str:
        return f"TinyShakespeare(path={str(self.path)!r})"
