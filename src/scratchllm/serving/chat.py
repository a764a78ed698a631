"""Turning an OpenAI ``messages`` list into the prompt a model continues, and where its answer ends.

Two renderings:

- **ChatML**, the fine-tuning chat template (``scratchllm.finetune.chat``, the one place it is defined), when the
  tokenizer has its ``<|im_start|>`` / ``<|im_end|>`` special tokens (a chat fine-tune adds them). The markers are
  their special ids (a user's message is encoded as ordinary text, so it cannot forge a turn), and the answer ends
  at ``<|im_end|>``: exactly what the model was trained to write.
- **Plain text** for a model that only continues text (a base model): ``Role: content`` lines, then
  ``Assistant:``; the answer ends where the model starts the next ``\\nUser:`` turn.
"""

from __future__ import annotations

from typing import Any, Sequence

from scratchllm.errors import InputError
from scratchllm.tokenizers import Tokenizer

IM_START, IM_END = "<|im_start|>", "<|im_end|>"  # as scratchllm.finetune.chat names them
ROLES = ("system", "user", "assistant")


def is_chatml(tokenizer: Tokenizer | None) -> bool:
    return tokenizer is not None and {IM_START, IM_END} <= set(tokenizer.special_tokens)


def render_chat(tokenizer: Tokenizer, messages: Sequence[Any]) -> tuple[list[int], list[int], list[str]]:
    """(prompt ids, stop token ids, stop strings) for ``messages``: items with ``role`` and ``content``."""
    turns = [{"role": _field(m, "role"), "content": _field(m, "content")} for m in messages]
    if is_chatml(tokenizer):
        # imported here: the fine-tuning package loads Lightning, which a base model's server never needs
        from scratchllm.finetune.chat import ChatTemplate, check_messages

        template = ChatTemplate(tokenizer)
        return template.prompt_ids(check_messages(turns, "messages", need_assistant=False)), [template.end_id], []
    if not turns:
        raise InputError("messages is empty: send at least one {'role': 'user', 'content': ...}")
    for i, turn in enumerate(turns):
        if turn["role"] not in ROLES:
            raise InputError(f"messages[{i}].role={turn['role']!r} is not one of: {', '.join(ROLES)}")
        if not isinstance(turn["content"], str):
            raise InputError(f"messages[{i}].content must be a string (parts and images are not supported)")
    text = "".join(f"{t['role'].capitalize()}: {t['content']}\n" for t in turns) + "Assistant:"
    return tokenizer.encode(text), [], ["\nUser:", "\nSystem:"]


def _field(message: Any, name: str) -> Any:
    return message.get(name) if isinstance(message, dict) else getattr(message, name, None)
