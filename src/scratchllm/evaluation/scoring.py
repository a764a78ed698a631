"""Log-likelihoods from a GPT: of a whole text (loss, perplexity, bits per byte) and of a continuation given a
context (what multiple-choice tasks and lm-evaluation-harness ask for).

**Texts longer than the context: a sliding window.** A model reads at most ``context_length`` tokens, so a long
text is scored window by window. The first window scores every token it holds; each later window moves ``stride``
tokens on and scores only its last ``stride`` tokens (the last window ends at the text's end, so it scores what is
left, with more context). Every token is therefore scored exactly once, and every token
past the first window sees at least ``context_length - stride`` tokens before it. ``stride = context_length``
gives disjoint windows (cheapest; a window's first token sees only one token: lm-evaluation-harness's
``loglikelihood_rolling`` policy), smaller strides give lower, fairer numbers at ``context_length / stride`` times
the cost (Hugging Face's perplexity guide explains the trade-off).

**The first token.** A tokenizer with an end-of-text id gets it as a document start, so the first real token is
scored too (as lm-eval does). A char tokenizer has none: its first token is context only, and bits per byte then
leaves that token's bytes out, so the ratio always divides the NLL of exactly the bytes that were scored.

**Bits per byte** = total NLL in bits / UTF-8 bytes scored = loss × tokens / (bytes × ln 2). Unlike loss per
token it does not depend on how finely a tokenizer cuts the text, so a char model and a BPE model compare.

**Batching without a padding mask.** Attention is causal, so padding added at the *end* of a row changes nothing
at the positions before it: rows of different lengths are right-padded and only their real positions are read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from scratchllm.errors import ConfigError, InputError
from scratchllm.tokenizers import Tokenizer


@dataclass
class TextScore:
    """What scoring a text gives; several texts add up (``+``)."""

    nll: float = 0.0  # total negative log-likelihood in nats
    tokens: int = 0  # tokens scored
    bytes: int = 0  # UTF-8 bytes those tokens spell

    def __add__(self, other: "TextScore") -> "TextScore":
        return TextScore(self.nll + other.nll, self.tokens + other.tokens, self.bytes + other.bytes)

    @property
    def loss(self) -> float:
        return self.nll / self.tokens if self.tokens else float("nan")

    @property
    def perplexity(self) -> float:
        return math.exp(self.loss) if self.tokens else float("nan")

    @property
    def bits_per_byte(self) -> float:
        return self.nll / (self.bytes * math.log(2)) if self.bytes else float("nan")

    def to_dict(self) -> dict[str, float]:
        return {"loss": self.loss, "perplexity": self.perplexity, "bits_per_byte": self.bits_per_byte,
                "tokens": self.tokens, "bytes": self.bytes}


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def _forward_rows(model: nn.Module, rows: Sequence[Sequence[int]]) -> torch.Tensor:
    """Log-probabilities (float32, rows × longest × vocab) of right-padded rows; padded positions are garbage."""
    width = max(len(r) for r in rows)
    batch = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        batch[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    logits, _ = model(batch.to(_device(model)))
    return F.log_softmax(logits.float(), dim=-1)


def check_stride(stride: int | None, context: int) -> int:
    if stride is None:
        return max(1, context // 2)
    if isinstance(stride, bool) or not isinstance(stride, int) or not 1 <= stride <= context:
        raise ConfigError(f"stride={stride!r} must be an integer in [1, context_length={context}] (null = half the "
                          "context)")
    return stride


def rolling_windows(n_targets: int, context: int, stride: int, first: int = 0) -> list[tuple[int, int, int]]:
    """The sliding-window policy (module doc) as ``(start, end, first_new)`` triples: a window reads inputs
    ``seq[start:end]``, predicts ``seq[start+1:end+1]`` and keeps the predictions from target ``first_new`` on.
    Targets before ``first`` are context only (a continuation's context)."""
    windows, scored = [], first
    while scored < n_targets:
        end = min(scored + (stride if scored else context), n_targets)
        windows.append((max(0, end - context), end, scored))
        scored = end
    return windows


def _score_windows(
    model: nn.Module, seq: Sequence[int], windows: list[tuple[int, int, int]], batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per scored target of ``windows`` over ``seq``: its NLL (float32) and whether it was the argmax."""
    nlls: list[torch.Tensor] = []
    hits: list[torch.Tensor] = []
    for b in range(0, len(windows), batch_size):
        group = windows[b : b + batch_size]
        logp = _forward_rows(model, [seq[s:e] for s, e, _ in group])
        for row, (s, e, first) in enumerate(group):
            targets = torch.tensor(seq[first + 1 : e + 1], device=logp.device)
            lp = logp[row, first - s : e - s]
            nlls.append(-lp.gather(-1, targets[:, None])[:, 0].cpu())
            hits.append((lp.argmax(-1) == targets).cpu())
    if not nlls:
        return torch.zeros(0), torch.zeros(0, dtype=torch.bool)
    return torch.cat(nlls), torch.cat(hits)


def token_nlls(
    model: nn.Module, ids: Sequence[int], *, prefix: int | None = None, stride: int | None = None, batch_size: int = 8
) -> torch.Tensor:
    """NLL (nats) of each token of ``ids`` after the first, or of every token when a ``prefix`` id (end-of-text)
    is put before them, under the sliding-window policy (module doc). Returns a float32 tensor."""
    context = model.config.context_length
    stride = check_stride(stride, context)
    seq = ([prefix] if prefix is not None else []) + list(ids)
    return _score_windows(model, seq, rolling_windows(len(seq) - 1, context, stride), batch_size)[0]


def score_text(
    model: nn.Module, tokenizer: Tokenizer, text: str, *, stride: int | None = None, batch_size: int = 8
) -> TextScore:
    """Loss, perplexity and bits per byte of one text (module doc: windows, first token, bytes)."""
    ids = tokenizer.encode(text)
    prefix = tokenizer.eot_id
    if len(ids) + (prefix is not None) < 2:
        return TextScore()
    nll = token_nlls(model, ids, prefix=prefix, stride=stride, batch_size=batch_size)
    scored_bytes = len(text.encode("utf-8"))
    if prefix is None:  # the first token was context only: its bytes were not scored either
        scored_bytes -= len(tokenizer.decode(ids[:1]).encode("utf-8"))
    return TextScore(float(nll.double().sum()), int(nll.numel()), scored_bytes)


# ------------------------------------------------------------------------------ context → continuation
def encode_pair(tokenizer: Tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of ``context`` and ``continuation`` as lm-evaluation-harness cuts them: trailing whitespace of
    the context (spaces, newlines) moves to the continuation, the pair is encoded whole (so a BPE merge across the
    seam is what the model saw in training) and the continuation is what follows the context's own encoding. An
    empty context becomes the end-of-text id (or, without one, is refused)."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    if not continuation:
        raise InputError("an empty continuation has no likelihood to score; give every choice some text")
    if not context:
        if tokenizer.eot_id is None:
            raise InputError(f"an empty context needs an end-of-text token, which the {tokenizer.name} tokenizer "
                             "lacks; give every item a context")
        return [tokenizer.eot_id], tokenizer.encode(continuation)
    whole = tokenizer.encode(context + continuation)
    context_ids = tokenizer.encode(context)
    return context_ids, whole[len(context_ids) :]


@dataclass(frozen=True)
class Likelihood:
    logprob: float  # sum of the continuation tokens' log-probabilities (nats)
    greedy: bool  # whether each continuation token is the argmax at its position
    tokens: int  # continuation tokens


def continuation_logprobs(
    model: nn.Module, pairs: Sequence[tuple[Sequence[int], Sequence[int]]], *, batch_size: int = 8
) -> list[Likelihood]:
    """The log-likelihood of each ``(context_ids, continuation_ids)`` pair. A pair longer than the context window
    keeps its last ``context_length + 1`` tokens (the context is cut from the left, as lm-eval does); a
    continuation longer than the window is scored by the sliding window (module doc), from its first token on."""
    context = model.config.context_length
    rows, lengths, results = [], [], {}
    for i, (ctx, cont) in enumerate(pairs):
        if not cont:
            raise InputError("an empty continuation has no likelihood to score")
        if not ctx:
            raise InputError("an empty context leaves the first token unconditioned; start it with end-of-text")
        if len(cont) > context:
            seq = list(ctx) + list(cont)
            windows = rolling_windows(len(seq) - 1, context, max(1, context // 2), first=len(ctx) - 1)
            nll, hit = _score_windows(model, seq, windows, batch_size)
            results[i] = Likelihood(-float(nll.double().sum()), bool(hit.all()), len(cont))
            continue
        rows.append((i, (list(ctx) + list(cont))[-(context + 1) :]))
        lengths.append(len(cont))
    for b in range(0, len(rows), batch_size):
        group = rows[b : b + batch_size]
        logp = _forward_rows(model, [r[:-1] for _, r in group])
        for row, ((i, whole), n) in enumerate(zip(group, lengths[b : b + batch_size])):
            end = len(whole) - 1
            lp = logp[row, end - n : end]
            targets = torch.tensor(whole[-n:], device=lp.device)
            picked = lp.gather(-1, targets[:, None])[:, 0]
            greedy = bool((lp.argmax(-1) == targets).all())
            results[i] = Likelihood(float(picked.double().sum()), greedy, n)
    return [results[i] for i in range(len(pairs))]
