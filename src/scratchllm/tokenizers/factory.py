"""``build_tokenizer``: one place that turns a config spec into a ``Tokenizer``.

A spec is a plain name (``"char"``) or a mapping with ``name`` plus options (``{"name": "char", "unknown":
"replace"}``); Hydra hands us a ``DictConfig``, which is a ``Mapping`` too. The same function rebuilds a
tokenizer from its ``to_dict()`` (a char spec that already carries ``chars`` needs no training text), so
checkpoints and config share one code path. New tokenizers (e.g. a trained BPE) add one builder below.

Char default: when ``unknown`` is not given, a char tokenizer uses ``"replace"``. Its vocabulary is fitted on
the training split only, and a validation split (or a prompt) may hold characters training never saw; with
``"replace"`` they become ``<unk>`` instead of stopping data preparation. Ask for ``unknown: error`` to make
such characters an error instead.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from scratchllm.errors import ConfigError
from scratchllm.tokenizers.base import Tokenizer
from scratchllm.tokenizers.char import CharTokenizer
from scratchllm.tokenizers.gpt2 import GPT2Tokenizer

CHAR_DEFAULT_UNKNOWN = "replace"


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


# name -> (builder, accepted option keys besides "name")
_BUILDERS: dict[str, tuple[Callable[[dict[str, Any], str | None], Tokenizer], tuple[str, ...]]] = {
    "char": (_build_char, ("unknown", "chars")),
    "gpt2": (_build_gpt2, ()),
}


def tokenizer_names() -> list[str]:
    """Names ``build_tokenizer`` accepts."""
    return sorted(_BUILDERS)


def normalize_spec(spec: Mapping[str, Any] | str) -> dict[str, Any]:
    """A spec as a plain dict with ``name`` (validated) and only known options: the cache key of a tokenizer."""
    if isinstance(spec, str):
        d: dict[str, Any] = {"name": spec}
    elif isinstance(spec, Mapping):
        d = {str(k): v for k, v in spec.items() if v is not None}
        # plain values only (a DictConfig's ListConfig -> list), so the spec hashes and serialises
        d = {k: (list(v) if isinstance(v, (list, tuple)) or type(v).__name__ == "ListConfig" else v)
             for k, v in d.items()}
    else:
        raise ConfigError(f"tokenizer spec must be a name or a mapping with 'name', got {type(spec).__name__}")
    name = d.get("name")
    if name not in _BUILDERS:
        raise ConfigError(f"unknown tokenizer {name!r}; choose one of {tokenizer_names()} (set tokenizer.name)")
    allowed = _BUILDERS[name][1]
    extra = sorted(set(d) - {"name", *allowed})
    if extra:
        raise ConfigError(f"tokenizer {name!r} has no option(s) {extra}; allowed: {list(allowed) or 'none'}")
    return d


def build_tokenizer(spec: Mapping[str, Any] | str, train_text: str | None = None) -> Tokenizer:
    """Build the tokenizer ``spec`` names; ``train_text`` fits tokenizers that learn from data (char)."""
    d = normalize_spec(spec)
    builder, _ = _BUILDERS[d["name"]]
    return builder(d, train_text)
