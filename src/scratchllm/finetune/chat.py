"""The chat template: a conversation (``[{role, content}, ...]``) → token ids and a loss mask.

We use ChatML's layout, the one most open chat models share, with its markers as *special tokens* added through
the tokenizer (``Tokenizer.add_special_tokens``), so they are one id each, travel in the checkpoint with the
tokenizer's ``to_dict()``, and can never be produced by a user's text (content is encoded as ordinary text)::

    <|im_start|>system
    You are …<|im_end|>
    <|im_start|>user
    Who speaks next? …<|im_end|>
    <|im_start|>assistant
    HAMLET<|im_end|>

The loss mask marks what the model should learn to write: each assistant turn's content and its closing
``<|im_end|>`` (so the model learns to stop). Headers, system and user text are context only. Generation renders
the same layout and ends the prompt with ``<|im_start|>assistant\\n``, then stops at ``<|im_end|>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from scratchllm.errors import DataError, InputError
from scratchllm.tokenizers import Tokenizer

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
CHAT_TOKENS = (IM_START, IM_END)
ROLES = ("system", "user", "assistant")


def add_chat_tokens(tokenizer: Tokenizer) -> dict[str, int]:
    """Add the chat markers to ``tokenizer`` (a no-op when it has them); returns name → id."""
    return tokenizer.add_special_tokens(list(CHAT_TOKENS))


def has_chat_tokens(tokenizer: Tokenizer | None) -> bool:
    return tokenizer is not None and all(t in tokenizer.special_tokens for t in CHAT_TOKENS)


def check_messages(messages: Any, where: str = "conversation", *, need_assistant: bool = True) -> list[dict[str, str]]:
    """``messages`` as a list of ``{role, content}`` dicts, or a ``DataError`` naming ``where`` and the field."""
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: 'messages' must be a non-empty list of {{role, content}} objects")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise DataError(f"{where}: messages[{i}] is not an object with 'role' and 'content'")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise DataError(f"{where}: messages[{i}].role is {role!r}; use one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise DataError(f"{where}: messages[{i}].content must be a string")
        if role == "system" and i != 0:
            raise DataError(f"{where}: messages[{i}] is a system message; only the first message may be one")
        out.append({"role": role, "content": content})
    if need_assistant and not any(m["role"] == "assistant" for m in out):
        raise DataError(f"{where}: the conversation has no assistant turn (nothing to learn); add one")
    return out


@dataclass
class Rendered:
    ids: list[int]
    mask: list[bool]  # True where the token is part of an assistant reply (content + its <|im_end|>)

    @property
    def trained_tokens(self) -> int:
        return sum(self.mask)


class ChatTemplate:
    """Renders conversations for one tokenizer (which must hold the chat markers: ``add_chat_tokens``)."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        if not has_chat_tokens(tokenizer):
            raise InputError(f"the tokenizer has no chat markers {list(CHAT_TOKENS)}: fine-tune the model with a "
                             "chat data set first (objective=sft), or add them with add_chat_tokens")
        self.tokenizer = tokenizer
        self.start_id = tokenizer.special_tokens[IM_START]
        self.end_id = tokenizer.special_tokens[IM_END]
        self._newline = tokenizer.encode_ordinary("\n")
        self._headers = {r: [self.start_id, *tokenizer.encode_ordinary(r + "\n")] for r in ROLES}

    def render(self, messages: Sequence[Mapping[str, str]], *, add_generation_prompt: bool = False) -> Rendered:
        """Ids of the conversation and its loss mask; ``add_generation_prompt`` ends with the assistant header."""
        ids: list[int] = []
        mask: list[bool] = []
        for m in messages:
            header = self._headers[m["role"]]
            body = [*self.tokenizer.encode_ordinary(m["content"]), self.end_id]
            learn = m["role"] == "assistant"
            ids += header + body + self._newline
            mask += [False] * len(header) + [learn] * len(body) + [False] * len(self._newline)
        if add_generation_prompt:
            ids += self._headers["assistant"]
            mask += [False] * len(self._headers["assistant"])
        return Rendered(ids, mask)

    def prompt_ids(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        """What generation feeds the model: the conversation so far, then the assistant header."""
        return self.render(messages, add_generation_prompt=True).ids
