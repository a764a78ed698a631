"""Held-out answer accuracy: greedy replies to the held-out conversations, checked by exact match.

For each conversation the prompt is everything before its last assistant turn; the model's greedy reply (up to
its ``<|im_end|>``) is compared with that turn, whitespace trimmed. This is the number instruction tuning should
move (the loss alone does not say the answers are right); ``plays.baseline_answer`` gives the rule to beat.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from scratchllm.finetune.chat import ChatTemplate
from scratchllm.tokenizers import Tokenizer


def split_last_answer(conversation: Sequence[dict[str, str]]) -> tuple[list[dict[str, str]], str]:
    last = max(i for i, m in enumerate(conversation) if m["role"] == "assistant")
    return list(conversation[:last]), conversation[last]["content"]


@torch.no_grad()
def answer_accuracy(
    model: torch.nn.Module,
    tokenizer: Tokenizer,
    conversations: Sequence[Sequence[dict[str, str]]],
    *,
    max_new_tokens: int = 16,
    baseline: Callable[[Sequence[dict[str, str]]], str] | None = None,
) -> dict[str, float]:
    """``{"accuracy": …, "n": …}`` of greedy replies (plus ``baseline`` accuracy when a rule is given)."""
    from scratchllm.generation import generate

    template = ChatTemplate(tokenizer)
    was_training = model.training
    model.eval()
    prompts, answers = zip(*(split_last_answer(c) for c in conversations))
    replies = generate(model, [template.prompt_ids(p) for p in prompts], max_new_tokens, temperature=0.0,
                       stop=[template.end_id])
    model.train(was_training)
    right = sum(tokenizer.decode(r).strip() == a.strip() for r, a in zip(replies, answers))
    result = {"accuracy": right / len(answers), "n": float(len(answers))}
    if baseline is not None:
        result["baseline_accuracy"] = sum(baseline(c) == a for c, a in zip(conversations, answers)) / len(answers)
    return result
