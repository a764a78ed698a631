"""Our tokenizers as Hugging Face tokenizer files, so ``transformers.AutoTokenizer.from_pretrained(folder)`` loads
an exported model's tokenizer offline and encodes text to exactly our ids.

What ``save_hf_tokenizer`` writes into the folder:

- ``tokenizer.json``: the Hugging Face ``tokenizers`` pipeline (read by ``PreTrainedTokenizerFast``);
- ``tokenizer_config.json`` + ``special_tokens_map.json``: which class to build, the eos/bos/unk tokens, the
  context length (``model_max_length``), and no space clean-up on decode (it would change the text);
- ``scratchllm_tokenizer.json``: our own ``Tokenizer.save`` file, so scratchllm rebuilds the very same tokenizer
  (``load_hf_tokenizer``); ``tokenizer.json`` itself is Hugging Face's format, not ours.

**Byte-level BPE** (gpt2, a trained ``bpe``, cl100k). tiktoken and Hugging Face run the same algorithm but store it
differently. tiktoken keeps ``mergeable_ranks`` (token bytes -> rank = id) and merges *any* adjacent pair whose
concatenation is a token, lowest rank first. Hugging Face keeps a vocabulary (token string -> id) and an ordered
list of merges (pair of token strings). So:

- token strings: Hugging Face's byte-level BPE works on text, not bytes, so each byte is shown as one printable
  character (GPT-2's ``bytes_to_unicode``: printable bytes stand for themselves, the rest are shifted past 255,
  e.g. the space becomes ``Ġ``). A token's string is the mapped characters of its bytes;
- merges: the pair that forms a token is found by running BPE over the token's own bytes with only the merges
  ranked below it: it stops at exactly two parts, and those are the pair (``recover_merges``);
- ``ignore_merges``: tiktoken looks a whole regex piece up first and emits it as one token if it is one; this flag
  makes Hugging Face do the same (it matters for tokens that merges alone never reach);
- pre-tokenisation: the tokenizer's own split regex (GPT-2's, or GPT-4's that our trained BPE uses by default), then
  ``ByteLevel`` without its built-in regex, so the pieces are exactly tiktoken's;
- special tokens (``<|endoftext|>`` ...) are added tokens. Note the one difference on purpose: our ``encode`` reads
  the text ``"<|endoftext|>"`` as ordinary text (a document cannot inject a boundary), while a Hugging Face tokenizer
  matches it as the special id, as every GPT-2 user expects.

**Characters** (``char``): a ``WordLevel`` model over the character vocabulary, a split that makes every character
its own word, and a decoder that concatenates (without one Hugging Face would join tokens with spaces). With
``unknown=replace`` the last id is ``<unk>``; it decodes to U+FFFD as ours does (and, like any special token,
the text ``"<unk>"`` is read as it by Hugging Face). With ``unknown=error`` an unseen character is an error in
Hugging Face too.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Sequence

from scratchllm.errors import ConfigError
from scratchllm.tokenizers import CharTokenizer, TiktokenTokenizer, Tokenizer, load_tokenizer
from scratchllm.tokenizers.char import UNK_TEXT, UNK_TOKEN
from scratchllm.tokenizers.cl100k import CL100K_PATTERN
from scratchllm.tokenizers.gpt2 import GPT2_PATTERN
from scratchllm.tokenizers.base import HF_EXPORT_FILE
from scratchllm.tokenizers.tiktoken_base import ENDOFTEXT

SIDECAR = HF_EXPORT_FILE  # our Tokenizer.save file, beside Hugging Face's tokenizer.json
HF_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", SIDECAR)
_PATTERNS = {"gpt2": GPT2_PATTERN, "cl100k": CL100K_PATTERN}  # trained BPEs carry theirs (``.pattern``)
_ANY_CHAR = r"[\s\S]"  # one character, newlines included (a bare "." skips "\n" in Hugging Face's regex engine)


# ------------------------------------------------------------------------------------------ byte-level BPE
@functools.lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map: the 188 printable Latin-1 bytes stand for themselves, the other 68
    (control characters, space, DEL, NBSP, soft hyphen) become chr(256), chr(257), ... in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {b: chr(b) for b in printable}
    shifted = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + shifted)
            shifted += 1
    return mapping


def token_string(token: bytes) -> str:
    """A token's bytes as Hugging Face's byte-level vocabulary spells them."""
    table = bytes_to_unicode()
    return "".join(table[b] for b in token)


def _split_by_lower_merges(token: bytes, ranks: dict[bytes, int], rank: int) -> list[bytes]:
    """BPE over ``token``'s bytes, as tiktoken does it, using only tokens ranked below ``rank``."""
    parts = [bytes([b]) for b in token]
    while len(parts) > 1:
        best, at = rank, -1  # the lowest-ranked adjacent pair that is a token below ``rank`` (leftmost on ties)
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1], rank)
            if r < best:
                best, at = r, i
        if at < 0:
            break
        parts[at: at + 2] = [parts[at] + parts[at + 1]]
    return parts


def recover_merges(tokens: Sequence[bytes]) -> list[tuple[bytes, bytes]]:
    """The merge pair of every multi-byte token, in rank order (``tokens[i]`` has rank i).

    A token no sequence of lower merges builds as two parts is never produced by merging (tiktoken can still emit
    it when a whole regex piece equals it, which ``ignore_merges`` covers); it gets no merge."""
    ranks = {t: r for r, t in enumerate(tokens)}
    merges = []
    for rank, token in enumerate(tokens):
        if len(token) > 1:
            parts = _split_by_lower_merges(token, ranks, rank)
            if len(parts) == 2:
                merges.append((parts[0], parts[1]))
    return merges


def _bpe_pattern(tokenizer: TiktokenTokenizer) -> str:
    pattern = getattr(tokenizer, "pattern", None) or _PATTERNS.get(tokenizer.name)
    if pattern is None:
        raise ConfigError(f"no split pattern known for the {tokenizer.name} tokenizer; it cannot be exported")
    return pattern


def _bpe_json(tokenizer: TiktokenTokenizer) -> dict[str, Any]:
    tokens = [tokenizer.token_bytes(i) for i in range(tokenizer.n_ranks)]  # id = rank
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": _added_tokens(tokenizer.special_tokens),
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": _bpe_pattern(tokenizer)}, "behavior": "Isolated",
                 "invert": False},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
            ],
        },
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": True,
            "vocab": {token_string(t): i for i, t in enumerate(tokens)},
            # "a b" strings: the format every tokenizers version reads; byte-level strings never hold a space
            "merges": [f"{token_string(a)} {token_string(b)}" for a, b in recover_merges(tokens)],
        },
    }


# ----------------------------------------------------------------------------------------------- characters
def _char_json(tokenizer: CharTokenizer) -> dict[str, Any]:
    vocab = {c: i for i, c in enumerate(tokenizer.chars)}
    specials = dict(tokenizer.special_tokens)  # <unk> (unknown=replace) and any added chat markers
    vocab.update(specials)
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": _added_tokens(specials),
        "normalizer": None,
        "pre_tokenizer": {"type": "Split", "pattern": {"Regex": _ANY_CHAR}, "behavior": "Isolated", "invert": False},
        "post_processor": None,
        "decoder": {
            "type": "Sequence",
            "decoders": [
                {"type": "Replace", "pattern": {"String": UNK_TOKEN}, "content": UNK_TEXT},
                {"type": "Fuse"},
            ],
        },
        # unk_token must be a string; with unknown=error it is not in the vocabulary, so an unseen character fails
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": UNK_TOKEN},
    }


# --------------------------------------------------------------------------------------------------- files
def _added_tokens(specials: dict[str, int]) -> list[dict[str, Any]]:
    return [
        {"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
         "special": True}
        for s, i in sorted(specials.items(), key=lambda kv: kv[1])
    ]


def hf_tokenizer_json(tokenizer: Tokenizer) -> dict[str, Any]:
    """The ``tokenizer.json`` (Hugging Face ``tokenizers`` format) that encodes exactly as ``tokenizer``."""
    if isinstance(tokenizer, TiktokenTokenizer):
        return _bpe_json(tokenizer)
    if isinstance(tokenizer, CharTokenizer):
        return _char_json(tokenizer)
    raise ConfigError(f"the {tokenizer.name} tokenizer cannot be exported to Hugging Face; supported: gpt2, bpe, "
                      f"cl100k, char")


def _special_tokens_map(tokenizer: Tokenizer) -> dict[str, Any]:
    specials = dict(tokenizer.special_tokens)
    found: dict[str, Any] = {}
    if ENDOFTEXT in specials:  # GPT-2's convention: one token both starts and ends a document
        found["bos_token"] = found["eos_token"] = ENDOFTEXT
    if isinstance(tokenizer, CharTokenizer) and tokenizer.unk_id is not None:
        found["unk_token"] = UNK_TOKEN
    extra = [s for s in specials if s not in (ENDOFTEXT, UNK_TOKEN)]
    if extra:
        found["additional_special_tokens"] = extra
    return found


def save_hf_tokenizer(tokenizer: Tokenizer, folder: str | Path, model_max_length: int) -> Path:
    """Write the tokenizer files of ``HF_FILES`` into ``folder`` (which must exist); returns the folder."""
    out = Path(folder)
    document = hf_tokenizer_json(tokenizer)
    special_map = _special_tokens_map(tokenizer)
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": int(model_max_length),
        "clean_up_tokenization_spaces": False,  # it would turn " ." into "." and break round trips
        "add_bos_token": False,
        "add_eos_token": False,
        **special_map,
    }
    _write_json(out / "tokenizer.json", document)
    _write_json(out / "tokenizer_config.json", config)
    _write_json(out / "special_tokens_map.json", special_map)
    tokenizer.save(out / SIDECAR)
    return out


def load_hf_tokenizer(folder: str | Path) -> Tokenizer | None:
    """The scratchllm tokenizer ``save_hf_tokenizer`` exported into ``folder``, or None if it holds none."""
    sidecar = Path(folder) / SIDECAR
    return load_tokenizer(sidecar) if sidecar.is_file() else None


def _write_json(file: Path, data: dict[str, Any]) -> None:
    file.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
