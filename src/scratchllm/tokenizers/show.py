"""See how a tokenizer cuts a text: every token with its id and bytes, the count, characters per token.

Byte-level BPE tokens are byte strings, not characters: one emoji may be four tokens of one byte each, and a
token may end in the middle of a UTF-8 character. So each token is shown as its bytes (``b'\\xf0\\x9f'``) and,
where those bytes are text on their own, as text. The coloured line shows a character split over several
tokens in the colour of the token that completes it.

Colour (alternating backgrounds, so token boundaries are visible even inside a word) is used only when asked
for, or on ``auto`` when stdout is a terminal and ``$NO_COLOR`` is unset.
"""

from __future__ import annotations

import codecs
import os
from dataclasses import dataclass
from typing import TextIO

from scratchllm.errors import ConfigError
from scratchllm.tokenizers.base import Tokenizer

COLOR_CHOICES = ("auto", "always", "never")
# two calm backgrounds (256-colour palette) with black text; reset at the end of each token
_BACKGROUNDS = ("\x1b[48;5;153m\x1b[38;5;16m", "\x1b[48;5;223m\x1b[38;5;16m")
_RESET = "\x1b[0m"


@dataclass(frozen=True)
class TokenView:
    """One token of a tokenised text."""

    index: int
    id: int
    data: bytes

    @property
    def text(self) -> str:
        """The bytes as text, with bytes that are not complete UTF-8 characters shown as ``\\xNN``."""
        return self.data.decode("utf-8", errors="backslashreplace")


def tokenize_for_display(tokenizer: Tokenizer, text: str) -> list[TokenView]:
    """Each token of ``text`` with its id and bytes."""
    return [TokenView(i, t, tokenizer.token_bytes(t)) for i, t in enumerate(tokenizer.encode(text))]


def use_color(choice: str, stream: TextIO) -> bool:
    if choice not in COLOR_CHOICES:
        raise ConfigError(f"color={choice!r} is not one of {list(COLOR_CHOICES)}")
    if choice != "auto":
        return choice == "always"
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and not os.environ.get("NO_COLOR")


def coloured_text(views: list[TokenView]) -> str:
    """The text with each token on an alternating background. A character split over several tokens is shown
    once, in the colour of the token that completes it (an incremental UTF-8 decoder tells us when)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    parts = []
    for v in views:
        piece = decoder.decode(v.data, final=v is views[-1])
        if piece:
            parts.append(f"{_BACKGROUNDS[v.index % 2]}{piece}{_RESET}")
    return "".join(parts)


def _cell(data: bytes) -> str:
    """The token as quoted text for the table (control characters escaped), or a note for partial UTF-8."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "(part of a character)"
    return "'" + "".join(c if c.isprintable() else repr(c)[1:-1] for c in text) + "'"


def format_tokens(tokenizer: Tokenizer, text: str, *, color: bool = False, label: str | None = None) -> str:
    """The report ``python -m scratchllm.tokenizer show`` prints: an optional coloured line, one table row per
    token (position, id, bytes, text), then the count and characters/bytes per token."""
    views = tokenize_for_display(tokenizer, text)
    lines = [f"tokenizer: {label or tokenizer.name} (vocab {tokenizer.vocab_size:,})"]
    if color and views:
        lines += [coloured_text(views), ""]
    id_width = max([len("id"), *(len(str(v.id)) for v in views)])
    bytes_width = min(28, max([len("bytes"), *(len(repr(v.data)) for v in views)]))
    lines.append(f"{'#':>5}  {'id':>{id_width}}  {'bytes':<{bytes_width}}  text")
    for v in views:
        cell = f"{v.data!r:<{bytes_width}}"
        if color:
            cell = f"{_BACKGROUNDS[v.index % 2]}{v.data!r}{_RESET}" + " " * max(0, bytes_width - len(repr(v.data)))
        lines.append(f"{v.index:>5}  {v.id:>{id_width}}  {cell}  {_cell(v.data)}")
    n_chars, n_bytes, n_tokens = len(text), len(text.encode("utf-8", "surrogatepass")), len(views)
    if n_tokens:
        ratio = f"{n_chars / n_tokens:.2f} characters/token, {n_bytes / n_tokens:.2f} bytes/token"
    else:
        ratio = "no tokens"
    lines.append(f"{n_tokens} tokens, {n_chars} characters, {n_bytes} bytes: {ratio}")
    return "\n".join(lines)
