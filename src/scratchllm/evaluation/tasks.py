"""Evaluation tasks: what an item is, and reading a user's task from JSONL.

Two kinds of item, told apart by their fields (one kind per file):

- **multiple choice** ``{"context": "...", "choices": ["...", "..."], "gold": 1}``: the model scores each choice as
  a continuation of the context (``gold`` is the index of the right one). The choice text is appended to the
  context exactly as written: put the separator you want (a space, a newline) at the end of the context or the
  start of each choice.
- **generation** ``{"prompt": "...", "answer": "..."}`` (``answer`` may be a list of accepted answers; optional
  ``"stop": ["\\n"]`` and ``"max_new_tokens": 32``): the model continues the prompt greedily until a stop string
  (default: a newline) and scores 1 when its text, stripped of surrounding whitespace, equals an answer stripped
  the same way.
- **chat** ``{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}``: the conversation up
  to its last assistant turn is rendered with the chat template (``finetune/chat.py``; the model needs its chat
  tokens, i.e. a fine-tuned model), the model replies greedily up to ``<|im_end|>``, and the reply scores 1 when
  it equals that last assistant turn (whitespace stripped). ``max_new_tokens`` is optional as above.

A task's name is its file's stem. Built-in tasks (``builtin.py``) are made of the same items.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from scratchllm.errors import DataError
from scratchllm.textio import read_jsonl

DEFAULT_STOP = ("\n",)
DEFAULT_MAX_NEW_TOKENS = 32


@dataclass(frozen=True)
class ChoiceItem:
    context: str
    choices: tuple[str, ...]
    gold: int


@dataclass(frozen=True)
class GenerationItem:
    prompt: str
    answers: tuple[str, ...]
    stop: tuple[str, ...] = DEFAULT_STOP
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS


@dataclass(frozen=True)
class ChatItem:
    messages: tuple[tuple[str, str], ...]  # (role, content) of the turns before the answer
    answer: str
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS

    def conversation(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]


Item = Union[ChoiceItem, GenerationItem, ChatItem]
KINDS = {ChoiceItem: "multiple_choice", GenerationItem: "generation", ChatItem: "chat"}


@dataclass
class Task:
    name: str
    kind: str  # "multiple_choice" | "generation" | "chat"
    items: list[Item] = field(default_factory=list)
    source: str = ""  # where the items came from (a file, or how a built-in task was made)


def _item(record: Any, where: str) -> Item:
    """One JSONL record as an item; a malformed one is a ``DataError`` naming the line and the fix."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object with context/choices/gold or prompt/answer")
    if "choices" in record:
        context, choices, gold = record.get("context"), record.get("choices"), record.get("gold")
        if not isinstance(context, str):
            raise DataError(f"{where}: 'context' must be a string (the text the choices continue)")
        if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c for c in choices):
            raise DataError(f"{where}: 'choices' must be a list of at least two non-empty strings")
        if isinstance(gold, bool) or not isinstance(gold, int) or not 0 <= gold < len(choices):
            raise DataError(f"{where}: 'gold' must be the index of the right choice, 0..{len(choices) - 1}")
        return ChoiceItem(context, tuple(choices), gold)
    if "prompt" in record:
        prompt, answer = record.get("prompt"), record.get("answer")
        answers = [answer] if isinstance(answer, str) else answer
        if not isinstance(prompt, str) or not isinstance(answers, list) or not answers or \
                not all(isinstance(a, str) for a in answers):
            raise DataError(f"{where}: 'prompt' must be a string and 'answer' a string or a list of strings")
        stop = record.get("stop", list(DEFAULT_STOP))
        stop = [stop] if isinstance(stop, str) else stop
        if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
            raise DataError(f"{where}: 'stop' must be a list of non-empty strings")
        max_new = record.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)
        if isinstance(max_new, bool) or not isinstance(max_new, int) or max_new < 1:
            raise DataError(f"{where}: 'max_new_tokens' must be an integer >= 1")
        return GenerationItem(prompt, tuple(answers), tuple(stop), max_new)
    if "messages" in record:
        return chat_item(record["messages"], where, record.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS))
    raise DataError(f"{where}: an item needs 'choices' (multiple choice: context, choices, gold), 'prompt' "
                    "(generation: prompt, answer) or 'messages' (chat)")


def chat_item(messages: Any, where: str, max_new_tokens: Any = DEFAULT_MAX_NEW_TOKENS) -> ChatItem:
    """A conversation as a chat item: its last assistant turn is the answer, the turns before it the prompt."""
    from scratchllm.finetune.chat import check_messages

    turns = check_messages(messages, where)  # the fine-tuning data's own checks: roles, contents, an assistant turn
    last = max(i for i, m in enumerate(turns) if m["role"] == "assistant")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise DataError(f"{where}: 'max_new_tokens' must be an integer >= 1")
    return ChatItem(tuple((m["role"], m["content"]) for m in turns[:last]), turns[last]["content"], max_new_tokens)


def load_jsonl_task(path: str | Path) -> Task:
    """A user's task from a JSONL file (module doc for the schema)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"task file {path} does not exist; pass a built-in task name or a .jsonl file")
    items = [_item(record, where) for where, record in read_jsonl(path, "the task file")]
    if not items:
        raise DataError(f"task file {path} holds no items; one JSON object per line")
    kinds = {KINDS[type(i)] for i in items}
    if len(kinds) > 1:
        raise DataError(f"{path} mixes {' and '.join(sorted(kinds))} items; put each kind in its own file")
    return Task(path.stem, kinds.pop(), items, str(path))
