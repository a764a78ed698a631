"""Text -> token ids for shards: what data preparation asks of a tokenizer, answered in this one place.

Two capabilities matter here, and ``data/`` asks about them only through these functions (never by checking
which tokenizer class it holds):

- ``needs_fit(spec)``: the tokenizer learns its vocabulary from the training split (a char tokenizer without a
  given ``chars`` list), so the train text is read first and handed to ``build_tokenizer(spec, train_text=...)``.
- ``encode_many``: ids as int64 arrays. A tokenizer with a vectorised ``encode_array`` (the char tokenizer:
  numpy over the code points) is asked for arrays directly; the others go through ``encode_batch`` (tiktoken
  runs a batch in threads).

Documents are joined with the tokenizer's end-of-text id when it has one (one ``eot`` after every document, as
GPT-2 was trained), otherwise with the text ``DOC_SEPARATOR`` between documents. Long documents are cut into
chunks only right after a newline followed by a non-space character: GPT-2's pre-tokeniser always ends a piece
there, so the ids are exactly those of encoding the whole document at once. (A tokenizer with another
pre-tokeniser must check that this cut point is still a piece boundary for it; a char tokenizer encodes each
character alone, so any cut is one.)
"""

from __future__ import annotations

import re
from typing import Any, Iterator, Mapping

import numpy as np

from scratchllm.errors import DataError, InputError
from scratchllm.tokenizers import Tokenizer, normalize_spec

CHUNK_CHARS = 1 << 20  # target characters per chunk handed to the tokenizer
BATCH_CHARS = 1 << 24  # characters handed to one encode_batch call
DOC_SEPARATOR = "\n\n"  # between documents, for tokenizers without an end-of-text id
_CUT = re.compile(r"\n(?=\S)")


def needs_fit(spec: Mapping[str, Any] | str) -> bool:
    """Whether the tokenizer ``spec`` names is fitted on the training text (see the module docstring)."""
    d = normalize_spec(spec)
    return d["name"] == "char" and not d.get("chars")


def encode_many(tokenizer: Tokenizer, texts: list[str]) -> list[np.ndarray]:
    """Ids of each text as 1-D int64 arrays."""
    vectorised = getattr(tokenizer, "encode_array", None)
    if vectorised is not None:
        return [vectorised(t) for t in texts]
    return [np.asarray(ids, dtype=np.int64) for ids in tokenizer.encode_batch(texts)]


def encode_document(tokenizer: Tokenizer, text: str) -> np.ndarray:
    """Ids of one text as a 1-D int64 array."""
    return encode_many(tokenizer, [text])[0]


def split_for_threads(text: str, chunk_chars: int = CHUNK_CHARS) -> list[str]:
    """Cut ``text`` into ~``chunk_chars`` pieces at points where GPT-2's pre-tokeniser always splits anyway."""
    if len(text) <= chunk_chars:
        return [text]
    pieces, start = [], 0
    while len(text) - start > chunk_chars:
        m = _CUT.search(text, start + chunk_chars)
        if m is None:
            break
        pieces.append(text[start : m.end()])
        start = m.end()
    pieces.append(text[start:])
    return pieces


def encode_documents(tokenizer: Tokenizer, docs: list[str], split: str) -> Iterator[np.ndarray]:
    """Token arrays of a split's documents, joined as described in the module docstring, in big batches."""
    eot = tokenizer.eot_id
    sep = None if eot is not None else encode_document(tokenizer, DOC_SEPARATOR)
    pending: list[tuple[str, bool, bool]] = []  # (chunk, first chunk of a later document, last chunk of a doc)
    pending_chars = 0

    def flush() -> Iterator[np.ndarray]:
        try:
            arrays = encode_many(tokenizer, [c for c, _, _ in pending])
        except InputError as e:  # e.g. a char vocabulary (fitted on train) lacks a validation character
            raise DataError(f"the {split} split has text the tokenizer cannot encode: {e}") from e
        for (_, sep_before, last), ids in zip(pending, arrays):
            if sep_before and sep is not None:
                yield sep
            yield ids
            if last and eot is not None:
                yield np.array([eot], dtype=np.int64)

    for doc_i, doc in enumerate(docs):
        chunks = split_for_threads(doc)
        for j, chunk in enumerate(chunks):
            pending.append((chunk, doc_i > 0 and j == 0, j == len(chunks) - 1))
            pending_chars += len(chunk)
            if pending_chars >= BATCH_CHARS:
                yield from flush()
                pending, pending_chars = [], 0
    if pending:
        yield from flush()
