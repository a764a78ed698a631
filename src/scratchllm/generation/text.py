"""Text in, text out: prompt encoding, incremental decoding and stop strings on top of the token-level ``stream``.

**Why decoding is incremental, not per token.** A byte-level BPE token is a run of *bytes*, not of characters: a
character outside ASCII (é, ’, an emoji) often spans two tokens, and decoding either token alone gives the
replacement character U+FFFD. Tokens are not characters either way round, and some tokenizers only produce the
right text for a whole sequence. So we decode *everything generated so far* at each step, print what was added
since the last print, and hold back a trailing U+FFFD: it is most likely the first half of a character whose
other half is still to come (whatever is still held when generation ends is printed as it is).

**Why stop strings are checked on text.** A stop string such as ``"\\n\\n"`` or ``"THE END"`` has many token
spellings (``"\\n\\n"`` is one GPT-2 token, or two ``"\\n"`` tokens, or the tail of ``".\\n\\n"``), so
converting it to one token sequence misses most of them. Instead we look for it in the decoded text. Text that
could still be the start of a stop string is held back until the next piece decides it, so the stop string
itself is never printed, even when it arrives split across tokens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterator, Sequence

from torch import nn

from scratchllm.errors import ConfigError, InputError
from scratchllm.generation.generate import stream
from scratchllm.generation.sampling import SamplingConfig
from scratchllm.tokenizers import CharTokenizer, Tokenizer

REPLACEMENT = "\ufffd"


# -------------------------------------------------------------------------------------------------- prompts
def encode_prompt(tokenizer: Tokenizer | None, prompt: str) -> list[int]:
    """The prompt's ids. Empty prompt: the end-of-text id (a document start), or, for tokenizers without one
    (char level), a newline when the vocabulary has it. Without a tokenizer the prompt is written as token ids
    (``"12 7 33"``)."""
    if tokenizer is None:
        try:
            ids = [int(t) for t in prompt.replace(",", " ").split()]
        except ValueError as err:
            raise InputError(
                "no tokenizer is known for this model, so the prompt must be token ids such as prompt='12 7 33'; "
                "or pass tokenizer=<name> or tokenizer.path=<tokenizer.json or folder>"
            ) from err
        if not ids:
            raise InputError("the prompt is empty and no tokenizer is known; give token ids, e.g. prompt='0'")
        return ids
    if prompt:
        return tokenizer.encode(prompt)
    if tokenizer.eot_id is not None:
        return [tokenizer.eot_id]
    newline = _encode_exactly(tokenizer, "\n")
    if newline is not None:
        return newline
    raise InputError(
        f"the prompt is empty and the {tokenizer.name} tokenizer has no end-of-text token; give a prompt "
        f"(e.g. the first word of a text like the training data)"
    )


def check_prompt_characters(tokenizer: Tokenizer | None, prompt: str, unknown: str | None = None) -> str | None:
    """For a char vocabulary: None when it holds every prompt character; otherwise a note for stderr naming the
    others, which encoding replaces with <unk>. Raises ``InputError`` instead when ``unknown`` (the policy; None =
    the tokenizer's own) is ``error``, or when the vocabulary has no <unk> to stand in for them. Byte-level
    tokenizers spell any text, so they never have unknown characters."""
    if not isinstance(tokenizer, CharTokenizer):
        return None
    known = set(tokenizer.chars)
    missing = list(dict.fromkeys(c for c in prompt if c not in known))  # in order of appearance, once each
    if not missing:
        return None
    shown = ", ".join(repr(c) for c in missing[:10]) + (", ..." if len(missing) > 10 else "")
    plural = len(missing) > 1
    count = f"{len(missing)} prompt character{'s are' if plural else ' is'} not in the model's vocabulary"
    if tokenizer.unk_id is None:
        raise InputError(f"{count}, which has no <unk>: {shown}; remove {'them' if plural else 'it'} from the prompt")
    if (unknown or tokenizer.unknown) == "error":
        raise InputError(f"{count}: {shown}; remove {'them' if plural else 'it'} from the prompt, or set "
                         "tokenizer.unknown=replace to replace them with <unk>")
    return f"note: {count} and {'were' if plural else 'was'} replaced by <unk>: {shown}"


def _encode_exactly(tokenizer: Tokenizer, text: str) -> list[int] | None:
    """``text``'s ids when they decode back to exactly ``text`` (not to an <unk> stand-in), else None."""
    try:
        ids = tokenizer.encode(text)
    except InputError:
        return None
    return ids if ids and tokenizer.decode(ids) == text else None


def format_ids(ids: Sequence[int]) -> str:
    """How token ids print without a tokenizer: each followed by a space."""
    return "".join(f"{i} " for i in ids)


# --------------------------------------------------------------------------------------------- decoding
class IncrementalDecoder:
    """Token ids in, new text out, correct for multi-token characters (module doc)."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.emitted = 0  # characters of decode(ids) already handed out

    def push(self, token: int) -> str:
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids)
        end = len(text)
        while end > self.emitted and text[end - 1] == REPLACEMENT:
            end -= 1  # possibly half a character: wait for the next token
        piece, self.emitted = text[self.emitted : end], max(self.emitted, end)
        return piece

    def flush(self) -> str:
        text = self.tokenizer.decode(self.ids)
        piece, self.emitted = text[self.emitted :], len(text)
        return piece


class StopStrings:
    """Cut a stream of text pieces at the first occurrence of any stop string (module doc)."""

    def __init__(self, stops: Sequence[str]) -> None:
        bad = [s for s in stops if not isinstance(s, str) or not s]
        if bad:
            raise ConfigError(f"stop strings must be non-empty strings, got {bad[0]!r}")
        self.stops = tuple(stops)
        self.held = ""
        self.done = False

    def push(self, piece: str) -> str:
        """Feed new text; return what can be shown now (sets ``done`` once a stop string was seen)."""
        if self.done:
            return ""
        text = self.held + piece
        hits = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.done, self.held = True, ""
            return text[: min(hits)]
        keep = self._pending(text)
        self.held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def _pending(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that is a proper prefix of a stop string."""
        best = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:k]):
                    best = k
                    break
        return best

    def flush(self) -> str:
        out, self.held = self.held, ""
        return out


# ------------------------------------------------------------------------------------------ the text stream
@dataclass
class GenerationStats:
    """Counts and clocks of one generation: what the CLI reports as tokens/s."""

    prompt_tokens: int = 0
    new_tokens: int = 0  # tokens the model produced (up to a stop string; an end-of-text token is not counted)
    seconds: float = 0.0  # from the call to the last token
    first_token_seconds: float = 0.0  # prefill + first draw: the time to first token

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def decode_tokens_per_second(self) -> float:
        """Tokens after the first over the time after the first: the steady decode rate, prefill excluded."""
        rest = self.seconds - self.first_token_seconds
        return (self.new_tokens - 1) / rest if self.new_tokens > 1 and rest > 0 else 0.0

    def summary(self) -> str:
        line = f"{self.new_tokens} tokens in {self.seconds:.2f} s: {self.tokens_per_second:.1f} tokens/s"
        if self.new_tokens > 1:
            line += (
                f" (decode {self.decode_tokens_per_second:.1f} tokens/s after {self.first_token_seconds:.2f} s to the "
                f"first token, {self.prompt_tokens} prompt tokens)"
            )
        return line


@dataclass
class TextStream:
    """Iterate to get text pieces as they are generated; ``stats`` is complete once iteration ends.

    Without a tokenizer the pieces are token ids written as ``"12 "`` (stop strings then need a tokenizer).
    """

    model: nn.Module
    tokenizer: Tokenizer | None
    prompt_ids: list[int]
    max_new_tokens: int
    stop: Sequence[str] = ()
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    stats: GenerationStats = field(default_factory=GenerationStats)

    def __post_init__(self) -> None:
        if self.stop and self.tokenizer is None:
            raise ConfigError("stop strings need a tokenizer to read the text; pass tokenizer=<name> or "
                              "tokenizer.path=<tokenizer.json or folder>")
        self._stops = StopStrings(list(self.stop))
        eot = self.tokenizer.eot_id if self.tokenizer is not None else None
        # Arguments are checked here, before the first token (stream validates eagerly).
        self._tokens = stream(self.model, self.prompt_ids, self.max_new_tokens, sampling=self.sampling, eot_id=eot)
        self.stats.prompt_tokens = len(self.prompt_ids)

    def __iter__(self) -> Iterator[str]:
        start = time.perf_counter()
        decoder = IncrementalDecoder(self.tokenizer) if self.tokenizer is not None else None
        try:
            for token in self._tokens:
                self.stats.new_tokens += 1
                now = time.perf_counter() - start
                if self.stats.new_tokens == 1:
                    self.stats.first_token_seconds = now
                self.stats.seconds = now
                piece = decoder.push(token) if decoder is not None else format_ids([token])
                out = self._stops.push(piece)
                if out:
                    yield out
                if self._stops.done:
                    return
            tail = self._stops.push(decoder.flush()) if decoder is not None else ""
            tail += "" if self._stops.done else self._stops.flush()
            if tail:
                yield tail
        finally:
            self._tokens.close()
