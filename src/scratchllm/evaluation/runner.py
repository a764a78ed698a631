"""Scoring tasks and texts with a loaded model: accuracy, normalised accuracy, exact match and the CORE summary.

**Multiple choice** follows lm-evaluation-harness: each choice's log-likelihood as a continuation of the context;
``acc`` takes the highest sum, ``acc_norm`` the highest sum divided by the choice's length in characters (long
choices are not penalised for having more tokens to pay for).

Each accuracy comes with its standard error as lm-evaluation-harness computes it, ``sqrt(p (1 - p) / (n - 1))``
(``acc_stderr``, ``acc_norm_stderr``, ``exact_match_stderr``); the Markdown table shows the 95% interval,
± 1.96 standard errors. With 200 four-choice items a guesser lands within 0.25 ± 0.06: a difference smaller
than that is noise.

**Generation**: greedy decoding (``SamplingConfig(temperature=0)``) until a stop string, exact match after
stripping surrounding whitespace. **Chat**: the same, on the conversation rendered by the chat template, until
``<|im_end|>`` (as ``finetune/answers.py`` scores the held-out answers during fine-tuning).

**CORE** (nanochat's summary): each task's accuracy centered on chance, ``(acc - random) / (1 - random)``, so 0 is
guessing and 1 is perfect whatever the number of choices, averaged over tasks. ``random`` is the mean of
``1 / len(choices)`` for multiple choice (scored by ``acc_norm``, as nanochat scores choices by mean loss per
token: a length normalisation) and 0 for generation and chat (scored by exact match).
"""

from __future__ import annotations

import math
import sys
from typing import Any, Sequence

from torch import nn
from tqdm import tqdm

from scratchllm.evaluation.scoring import TextScore, continuation_logprobs, encode_pair, score_text
from scratchllm.evaluation.tasks import ChatItem, ChoiceItem, GenerationItem, Task
from scratchllm.generation.fastpath import decode_session
from scratchllm.generation.sampling import SamplingConfig
from scratchllm.generation.text import TextStream, encode_prompt
from scratchllm.tokenizers import Tokenizer

GREEDY = SamplingConfig(temperature=0, top_k=None)


def _progress(total: int, desc: str) -> tqdm:
    return tqdm(total=total, desc=desc, unit="item", file=sys.stderr, leave=False, dynamic_ncols=True)


def choice_loglikelihoods(
    model: nn.Module, tokenizer: Tokenizer, items: Sequence[ChoiceItem], *, batch_size: int = 8, desc: str = ""
) -> list[list[float]]:
    """Per item, each choice's log-likelihood as a continuation of the context (nats)."""
    out: list[list[float]] = []
    with _progress(len(items), desc) as bar:
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            pairs = [encode_pair(tokenizer, item.context, choice) for item in chunk for choice in item.choices]
            scores = iter(continuation_logprobs(model, pairs, batch_size=batch_size * 4))
            out += [[next(scores).logprob for _ in item.choices] for item in chunk]
            bar.update(len(chunk))
    return out


def _argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=lambda i: values[i])  # ties go to the first, as numpy's argmax


def score_choices(items: Sequence[ChoiceItem], lls: Sequence[Sequence[float]]) -> dict[str, float]:
    """acc, acc_norm and chance of multiple-choice items from their choices' log-likelihoods."""
    acc = sum(_argmax(ll) == item.gold for item, ll in zip(items, lls))
    acc_norm = sum(_argmax([v / len(c) for v, c in zip(ll, item.choices)]) == item.gold
                   for item, ll in zip(items, lls))
    n = len(items)
    return {"acc": acc / n, "acc_norm": acc_norm / n, "random": sum(1 / len(i.choices) for i in items) / n}


def generate_answer(model: nn.Module, tokenizer: Tokenizer, item: GenerationItem) -> str:
    """The model's greedy continuation of the prompt, cut at the first stop string."""
    ids = encode_prompt(tokenizer, item.prompt)
    return "".join(TextStream(model, tokenizer, ids, item.max_new_tokens, stop=item.stop, sampling=GREEDY))


def chat_reply(model: nn.Module, tokenizer: Tokenizer, item: ChatItem) -> str:
    """The model's greedy reply to the conversation, up to its ``<|im_end|>``."""
    from scratchllm.finetune.chat import ChatTemplate
    from scratchllm.generation import generate

    template = ChatTemplate(tokenizer)  # a one-line error when the model has no chat tokens
    ids = template.prompt_ids(item.conversation())
    reply = generate(model, ids, item.max_new_tokens, sampling=GREEDY, stop=[[template.end_id]],
                     eot_id=tokenizer.eot_id)
    return tokenizer.decode(reply)


def exact_match(output: str, answers: Sequence[str]) -> bool:
    return output.strip() in {a.strip() for a in answers}


def stderr(accuracy: float, n: int) -> float:
    """The standard error of an accuracy over ``n`` items (lm-eval's: the sample standard deviation / sqrt(n))."""
    return math.sqrt(accuracy * (1 - accuracy) / (n - 1)) if n > 1 else float("nan")


def centered(accuracy: float, random: float) -> float:
    return (accuracy - random) / (1 - random)


def run_task(model: nn.Module, tokenizer: Tokenizer, task: Task, *, batch_size: int = 8) -> dict[str, Any]:
    """One task's metrics (and its centered accuracy, the CORE term)."""
    result: dict[str, Any] = {"kind": task.kind, "items": len(task.items), "source": task.source}
    if task.kind == "multiple_choice":
        items = [i for i in task.items if isinstance(i, ChoiceItem)]
        lls = choice_loglikelihoods(model, tokenizer, items, batch_size=batch_size, desc=task.name)
        result.update(score_choices(items, lls))
        result.update(acc_stderr=stderr(result["acc"], len(items)), acc_norm_stderr=stderr(result["acc_norm"],
                                                                                             len(items)))
        result["centered"] = centered(result["acc_norm"], result["random"])
        return result
    hits = 0
    # one decode session for the whole task: a bf16 model's weights are packed for the first answer, not per item
    with _progress(len(task.items), task.name) as bar, decode_session(model):
        for item in task.items:
            if isinstance(item, ChatItem):
                hits += exact_match(chat_reply(model, tokenizer, item), [item.answer])
            else:
                assert isinstance(item, GenerationItem)
                hits += exact_match(generate_answer(model, tokenizer, item), item.answers)
            bar.update(1)
    result.update(exact_match=hits / len(task.items), random=0.0)
    result["exact_match_stderr"] = stderr(result["exact_match"], len(task.items))
    result["centered"] = centered(result["exact_match"], 0.0)
    return result


def run_texts(
    model: nn.Module, tokenizer: Tokenizer, texts: dict[str, list[str]], *, stride: int | None, batch_size: int = 8
) -> dict[str, dict[str, float]]:
    """Loss, perplexity and bits per byte of each named group of documents (each document scored on its own)."""
    results = {}
    for name, documents in texts.items():
        total = TextScore()
        for doc in tqdm(documents, desc=name, unit="doc", file=sys.stderr, leave=False, dynamic_ncols=True):
            total = total + score_text(model, tokenizer, doc, stride=stride, batch_size=batch_size)
        results[name] = total.to_dict()
    return results


def core_score(task_results: dict[str, dict[str, Any]]) -> float | None:
    """The mean centered accuracy over tasks (None without tasks)."""
    values = [r["centered"] for r in task_results.values()]
    return sum(values) / len(values) if values else None
