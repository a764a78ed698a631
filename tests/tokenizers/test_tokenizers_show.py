"""``show``: tokens with ids and bytes, counts, characters per token; colour only when asked or on a terminal."""

from __future__ import annotations

import io

import pytest

from scratchllm.errors import ConfigError
from scratchllm.tokenizers import GPT2Tokenizer, build_tokenizer
from scratchllm.tokenizers.show import coloured_text, format_tokens, tokenize_for_display, use_color


def test_table_for_gpt2() -> None:
    out = format_tokens(GPT2Tokenizer(), "The quick brown fox")
    lines = out.splitlines()
    assert lines[0] == "tokenizer: gpt2 (vocab 50,257)"
    rows = [line.split() for line in lines[2:-1]]
    assert [(int(r[0]), int(r[1])) for r in rows] == [(0, 464), (1, 2068), (2, 7586), (3, 21831)]
    assert "b' quick'" in lines[3] and "' quick'" in lines[3]
    assert lines[-1] == "4 tokens, 19 characters, 19 bytes: 4.75 characters/token, 4.75 bytes/token"
    assert "\x1b[" not in out


def test_partial_characters_and_control_chars() -> None:
    views = tokenize_for_display(GPT2Tokenizer(), "🦊\n")
    assert b"".join(v.data for v in views) == "🦊\n".encode()
    out = format_tokens(GPT2Tokenizer(), "🦊\n")
    assert "(part of a character)" in out and "'\\n'" in out


def test_colour() -> None:
    tok = GPT2Tokenizer()
    out = format_tokens(tok, "fox 🦊", color=True)
    assert out.count("\x1b[0m") >= 4
    views = tokenize_for_display(tok, "fox 🦊 中文")
    line = coloured_text(views)
    # a character split over tokens appears once, whole, in the colour of the token that completes it
    assert line.count("🦊") == 1 and "文" in line and "\\x" not in line
    assert line.replace("\x1b[0m", "").replace("\x1b[48;5;153m", "").replace("\x1b[48;5;223m", "") \
        .replace("\x1b[38;5;16m", "") == "fox 🦊 中文"


def test_use_color(monkeypatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert use_color("auto", Tty()) is True
    assert use_color("auto", io.StringIO()) is False
    assert use_color("always", io.StringIO()) is True and use_color("never", Tty()) is False
    monkeypatch.setenv("NO_COLOR", "1")
    assert use_color("auto", Tty()) is False
    with pytest.raises(ConfigError):
        use_color("sometimes", Tty())


def test_empty_text_and_char() -> None:
    assert format_tokens(GPT2Tokenizer(), "").splitlines()[-1] == "0 tokens, 0 characters, 0 bytes: no tokens"
    tok = build_tokenizer("char", train_text="ab")
    assert format_tokens(tok, "ab").splitlines()[-1].endswith("1.00 characters/token, 1.00 bytes/token")
