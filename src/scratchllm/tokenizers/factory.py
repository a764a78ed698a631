"""``build_tokenizer``: one place that turns a config spec, a stored ``to_dict()`` or a saved file into a
``Tokenizer`` (``tokenizer_from_dict`` and ``load_tokenizer`` are that function for a dict and for a path).

A spec is one of:

- a plain name: ``"char"``, ``"gpt2"``, ``"cl100k"``;
- a mapping with ``name`` plus options: ``{"name": "char", "unknown": "replace"}``,
  ``{"name": "bpe", "path": "tokenizers/shakespeare-8k"}``. Hydra hands us a ``DictConfig``, a ``Mapping`` too;
- a path, as a string: a trained-BPE folder (``bpe.json`` + ``vocab.tiktoken``), a ``tokenizer.json`` that
  ``Tokenizer.save`` wrote, or a folder holding one (a prepared data cache).

The same function rebuilds a tokenizer from its ``to_dict()`` (a char spec that carries ``chars``, a bpe spec
that carries ``tokens``), so checkpoints and config share one code path. A new tokenizer adds one builder below.

Every spec may carry ``added_special_tokens``: a list of names (config: ``tokenizer.added_special_tokens=
[<|im_start|>,<|im_end|>]``) appended after the vocabulary in order, or the name -> id mapping ``to_dict()``
stores, whose ids must come out the same.

``normalize_spec`` is also the cache key of prepared data. For a trained BPE given by its folder it adds the
folder's ``fingerprint``: retraining into the same folder changes the key, so stale shards are never reused.

Char default: when ``unknown`` is not given, a char tokenizer uses ``"replace"``. Its vocabulary is fitted on
the training split only, and a validation split (or a prompt) may hold characters training never saw; with
``"replace"`` they become ``<unk>`` instead of stopping data preparation. Ask for ``unknown: error`` to make
such characters an error instead.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping

from scratchllm.errors import ConfigError, DataError
from scratchllm.tokenizers.base import ADDED_KEY, HF_EXPORT_FILE, Tokenizer
from scratchllm.tokenizers.bpe import BPETokenizer, is_bpe_dir
from scratchllm.tokenizers.char import CharTokenizer
from scratchllm.tokenizers.cl100k import Cl100kTokenizer
from scratchllm.tokenizers.gpt2 import GPT2Tokenizer

CHAR_DEFAULT_UNKNOWN = "replace"
SAVED_HINT = "point to a tokenizer.json that Tokenizer.save wrote (a broken data cache: delete it to rebuild it)"
BPE_TRAIN_HINT = "train one with 'python -m scratchllm.tokenizer train input=<text> output=<folder> vocab_size=32768'"


def _build_char(options: dict[str, Any], train_text: str | None) -> Tokenizer:
    unknown = options.get("unknown", CHAR_DEFAULT_UNKNOWN)
    chars = options.get("chars")
    if chars is not None:
        return CharTokenizer(list(chars), unknown=unknown)
    if train_text is None:
        raise ConfigError("the char tokenizer is fitted on training text; pass train_text (or a 'chars' list)")
    return CharTokenizer.from_text(train_text, unknown=unknown)


def _build_gpt2(options: dict[str, Any], train_text: str | None) -> Tokenizer:
    return GPT2Tokenizer()


def _build_cl100k(options: dict[str, Any], train_text: str | None) -> Tokenizer:
    return Cl100kTokenizer(path=options.get("path"))


def _build_bpe(options: dict[str, Any], train_text: str | None) -> Tokenizer:
    if "tokens" in options:  # a to_dict() (e.g. from a checkpoint): self-contained
        return BPETokenizer.from_dict(options)
    tok = BPETokenizer.from_dir(options["path"])
    tok.check_fingerprint(options.get("fingerprint"), f"the BPE tokenizer in {options['path']}")
    return tok


# name -> (builder, accepted option keys besides "name")
_BUILDERS: dict[str, tuple[Callable[[dict[str, Any], str | None], Tokenizer], tuple[str, ...]]] = {
    "char": (_build_char, ("unknown", "chars")),
    "gpt2": (_build_gpt2, ()),
    "cl100k": (_build_cl100k, ("path",)),
    "bpe": (_build_bpe, ("path", "fingerprint", "tokens", "pattern", "special_tokens", "label")),
}


def tokenizer_names() -> list[str]:
    """Names ``build_tokenizer`` accepts."""
    return sorted(_BUILDERS)


def _plain(value: Any) -> Any:
    """DictConfig/ListConfig (and tuples) -> dict/list, recursively, so a spec hashes and serialises."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ListConfig":
        return [_plain(v) for v in value]
    return value


def saved_tokenizer_file(folder: Path) -> Path | None:
    """The ``Tokenizer.save`` file inside ``folder``: a Hugging Face export's ``scratchllm_tokenizer.json``
    first (its ``tokenizer.json`` is Hugging Face's format), else ``tokenizer.json`` (a data cache)."""
    for name in (HF_EXPORT_FILE, "tokenizer.json"):
        if (folder / name).is_file():
            return folder / name
    return None


def _spec_from_path(text: str) -> dict[str, Any]:
    """A string spec that names a file or folder: a trained-BPE folder, or a saved tokenizer.json."""
    p = Path(os.path.expanduser(text))
    if p.is_dir() and is_bpe_dir(p):
        return {"name": "bpe", "path": text}
    if p.is_dir():
        found = saved_tokenizer_file(p)
        if found is None:
            raise DataError(f"folder {text} holds no tokenizer (no bpe.json, no tokenizer.json); {BPE_TRAIN_HINT}")
        p = found
    if not p.is_file():
        raise DataError(f"no tokenizer at {text}: the path does not exist")
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"tokenizer file {p} is not valid JSON ({e}); {SAVED_HINT}") from e
    if not isinstance(d, dict) or "name" not in d:
        raise DataError(f"tokenizer file {p} has no 'name' field; {SAVED_HINT}")
    return d


def _looks_like_path(text: str) -> bool:
    return os.sep in text or "/" in text or text.endswith(".json") or text.startswith(("~", ".")) \
        or os.path.exists(os.path.expanduser(text))


def normalize_spec(spec: Mapping[str, Any] | str) -> dict[str, Any]:
    """A spec as a plain dict with ``name`` (validated) and only known options: the cache key of a tokenizer."""
    if isinstance(spec, (str, os.PathLike)):
        text = os.fspath(spec)
        d: dict[str, Any] = {"name": text} if text in _BUILDERS or not _looks_like_path(text) \
            else _spec_from_path(text)
    elif isinstance(spec, Mapping):
        d = {}
        for k in spec.keys():
            try:
                v = spec[k]
            except Exception as e:  # noqa: BLE001 - omegaconf's MissingMandatoryValue for `key: ???`
                if type(e).__name__ != "MissingMandatoryValue":
                    raise
                hint = f"; {BPE_TRAIN_HINT}" if k == "path" else ""
                raise ConfigError(f"tokenizer.{k} must be set (it is ???){hint}") from None
            if v is not None:
                d[str(k)] = _plain(v)
    else:
        raise ConfigError(f"tokenizer spec must be a name or a mapping with 'name', got {type(spec).__name__}")
    name = d.get("name")
    if name not in _BUILDERS:
        raise ConfigError(f"unknown tokenizer {name!r}; choose one of {tokenizer_names()} or give the path of a "
                          "trained tokenizer folder (set tokenizer.name / tokenizer=)")
    allowed = (*_BUILDERS[name][1], ADDED_KEY)
    extra = sorted(set(d) - {"name", *allowed})
    if extra:
        raise ConfigError(f"tokenizer {name!r} has no option(s) {extra}; allowed: {list(allowed) or 'none'}")
    if name == "bpe":
        d = _normalize_bpe(d)
    return d


def _normalize_bpe(d: dict[str, Any]) -> dict[str, Any]:
    if "tokens" in d:
        return d
    if "path" not in d:
        raise ConfigError(f"tokenizer=bpe needs tokenizer.path=<trained tokenizer folder>; {BPE_TRAIN_HINT}")
    fixed = sorted(set(d) & {"pattern", "special_tokens", "label"})
    if fixed:
        raise ConfigError(f"tokenizer option(s) {fixed} come from the trained folder {d['path']}; "
                          "train again to change them")
    d["path"] = str(d["path"])
    if "fingerprint" not in d:
        d["fingerprint"] = BPETokenizer.read_meta(d["path"]).get("fingerprint")
    return d


def build_tokenizer(spec: Mapping[str, Any] | str, train_text: str | None = None) -> Tokenizer:
    """Build the tokenizer ``spec`` names; ``train_text`` fits tokenizers that learn from data (char)."""
    d = normalize_spec(spec)
    builder, _ = _BUILDERS[d["name"]]
    tokenizer = builder(d, train_text)
    tokenizer.add_special_tokens(d.get(ADDED_KEY) or ())
    return tokenizer


def tokenizer_from_dict(d: Mapping[str, Any]) -> Tokenizer:
    """Rebuild a tokenizer from the dict its ``to_dict()`` returned (e.g. one stored in a checkpoint)."""
    return build_tokenizer(d)


def load_tokenizer(path: str | os.PathLike[str]) -> Tokenizer:
    """Load a tokenizer saved with ``Tokenizer.save`` (a JSON file), or a folder: a trained BPE (``bpe.json`` +
    ``vocab.tiktoken``, written by ``python -m scratchllm.tokenizer train``) or one holding a ``tokenizer.json``
    (e.g. a prepared data cache)."""
    return build_tokenizer(_spec_from_path(os.fspath(path)))
