"""Held-out answers: exact-match accuracy (SFT) and a win rate against the start model (DPO).

For each conversation the prompt is everything before its last assistant turn; the model's greedy reply (up to
its ``<|im_end|>``) is compared with that turn, whitespace trimmed. This is the number instruction tuning should
move (the loss alone does not say the answers are right); ``plays.baseline_answer`` gives the rule to beat.

**Win rate** (``win_rate``): for each held-out preference prompt, both models (the tuned one and its start) reply
greedily, and a fixed judge scores each reply by how much closer it is to the chosen answer than to the rejected
one: ``chrf(reply, chosen) - chrf(reply, rejected)``, chrF being the character n-gram F-score (n = 1..6,
β = 2, spaces ignored; after Popović 2015). The tuned reply wins when its score is
higher, ties when equal (counted as half a win). Why this judge: it is deterministic and needs no other model;
it asks exactly what DPO was trained for (prefer the true continuation over the plausible wrong one) but of the
*generated* text, not the log-probabilities DPO optimises; and character n-grams give partial credit to a near
miss (a misspelt or truncated name) instead of the all-or-nothing of exact match, which is also reported.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Sequence

import torch

from scratchllm.finetune.chat import ChatTemplate
from scratchllm.tokenizers import Tokenizer


def split_last_answer(conversation: Sequence[dict[str, str]]) -> tuple[list[dict[str, str]], str]:
    last = max(i for i, m in enumerate(conversation) if m["role"] == "assistant")
    return list(conversation[:last]), conversation[last]["content"]


@torch.no_grad()
def greedy_replies(model: torch.nn.Module, tokenizer: Tokenizer, prompts: Sequence[Sequence[dict[str, str]]], *,
                   max_new_tokens: int = 16) -> list[str]:
    """The model's greedy reply to each prompt (a conversation ending before the assistant's turn), trimmed."""
    from scratchllm.generation import generate

    template = ChatTemplate(tokenizer)
    was_training = model.training
    model.eval()
    replies = generate(model, [template.prompt_ids(p) for p in prompts], max_new_tokens, temperature=0.0,
                       stop=[template.end_id])
    model.train(was_training)
    return [tokenizer.decode(r).strip() for r in replies]


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
    prompts, answers = zip(*(split_last_answer(c) for c in conversations))
    replies = greedy_replies(model, tokenizer, prompts, max_new_tokens=max_new_tokens)
    right = sum(r == a.strip() for r, a in zip(replies, answers))
    result = {"accuracy": right / len(answers), "n": float(len(answers))}
    if baseline is not None:
        result["baseline_accuracy"] = sum(baseline(c) == a for c, a in zip(conversations, answers)) / len(answers)
    return result


def chrf(hypothesis: str, reference: str, max_n: int = 6, beta: float = 2.0) -> float:
    """Character n-gram F-score in [0, 1] (module docstring): precision and recall averaged over n = 1..max_n
    (the orders both strings are long enough for), then F_beta; spaces are ignored, as in chrF."""
    hyp, ref = hypothesis.replace(" ", ""), reference.replace(" ", "")
    precisions, recalls = [], []
    for n in range(1, max_n + 1):
        h = Counter(hyp[i: i + n] for i in range(len(hyp) - n + 1))
        r = Counter(ref[i: i + n] for i in range(len(ref) - n + 1))
        if not h or not r:
            continue
        common = sum((h & r).values())
        precisions.append(common / sum(h.values()))
        recalls.append(common / sum(r.values()))
    if not precisions:
        return float(hyp == ref)  # both empty: identical; one empty: nothing in common
    p, r = sum(precisions) / len(precisions), sum(recalls) / len(recalls)
    return 0.0 if p + r == 0 else (1 + beta**2) * p * r / (beta**2 * p + r)


def preference_score(reply: str, chosen: str, rejected: str) -> float:
    """How much closer ``reply`` is to the chosen answer than to the rejected one, in [-1, 1]."""
    return chrf(reply, chosen) - chrf(reply, rejected)


def win_rate(model: torch.nn.Module, start: torch.nn.Module, tokenizer: Tokenizer,
             pairs: Sequence[tuple[Sequence[dict[str, str]], Sequence[dict[str, str]]]], *,
             max_new_tokens: int = 16) -> dict[str, float]:
    """The tuned ``model``'s win rate against ``start`` on preference ``pairs`` (module docstring: the judge),
    with wins, ties, losses and each model's exact match to the chosen answer."""
    prompts = [split_last_answer(chosen)[0] for chosen, _ in pairs]
    chosen = [split_last_answer(c)[1].strip() for c, _ in pairs]
    rejected = [split_last_answer(r)[1].strip() for _, r in pairs]
    tuned = greedy_replies(model, tokenizer, prompts, max_new_tokens=max_new_tokens)
    before = greedy_replies(start, tokenizer, prompts, max_new_tokens=max_new_tokens)
    wins = ties = 0
    for t, b, c, r in zip(tuned, before, chosen, rejected):
        st, sb = preference_score(t, c, r), preference_score(b, c, r)
        wins, ties = wins + (st > sb), ties + (st == sb)
    n = len(pairs)
    return {"win_rate": (wins + ties / 2) / n, "wins": float(wins), "ties": float(ties),
            "losses": float(n - wins - ties), "n": float(n),
            "exact_tuned": sum(t == c for t, c in zip(tuned, chosen)) / n,
            "exact_start": sum(b == c for b, c in zip(before, chosen)) / n,
            "rejected_tuned": sum(t == r for t, r in zip(tuned, rejected)) / n,
            "rejected_start": sum(b == r for b, r in zip(before, rejected)) / n}
