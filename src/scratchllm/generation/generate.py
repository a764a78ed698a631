"""Autoregressive generation: feed the prompt, sample a token, append it, repeat.

**Why a KV cache.** Without one, producing token t+1 means running the model over all t tokens again: every
layer recomputes the keys and values of a prefix it has already seen, so one new token costs O(t) projections
and O(t²) attention scores, and a whole generation O(T³) attention work. But a token's key and value never
change once computed (causal attention: position i never looks at anything after i). So we keep them:

1. *prefill*: one forward over the whole prompt writes every position's keys/values into the cache (one
   ``KVCache`` per block, ``model.make_caches``) and gives the logits of the first new token;
2. *decode*: each later step feeds only the newest token at ``start_pos`` = number of cached positions; it
   computes one query, one key and one value per layer and attends to the cached keys. That is O(t) work per
   token instead of O(t²), at the price of memory for the keys and values (what GQA/MQA shrink).

**Settings.** How tokens are picked (temperature, filters, seed, cache, overflow policy) is one
``SamplingConfig`` (sampling.py), passed as ``sampling=``; keywords such as ``temperature=0.8`` change fields of
it (of the default one when none is given), so there is a single set of defaults and a single code path.

Cached and uncached decoding compute the same function; ``use_cache=False`` is kept as the reference path (the
tests check that both give identical tokens).

**Decode shortcuts.** While a step runs, the output head scores only the newest position (all sampling reads)
and CPU linear layers fed a single row use the matrix-vector kernel; ``fastpath.py`` explains both. Each is
undone when the step ends. In bfloat16 those kernels use a packed copy of each weight, made once per generation,
or once for many inside ``with decode_session(model):``.

**Past the context window.** A model has ``context_length`` positions (learned position embeddings simply stop
there; RoPE models were never trained beyond it). When prompt + generated tokens would no longer fit:

- ``on_overflow="slide"`` (default) keeps the last ``context_length // 2`` tokens, re-prefills them into the
  cache at positions 0… and carries on. Why half: every slide costs one prefill, and keeping half the window
  leaves room for ``context_length // 2`` cheap decode steps before the next one, while still conditioning on
  a long stretch of recent text. The uncached path applies the same windowing, so both paths still agree.
- ``on_overflow="stop"`` ends generation there with a warning: what comes back is all the model could produce
  with its full context in view.

A prompt longer than ``context_length`` is cropped to its last ``context_length`` tokens (the model can only
read that many; ``on_overflow="stop"`` also warns about it). Repetition penalties still see the whole prompt.

**Batches of prompts with different lengths.** The model has no padding mask and every row of a batch decodes
at the same ``start_pos``, so left- or right-padding would let real tokens attend to pad tokens (or put them at
the wrong positions). Instead prompts are grouped by (cropped) length: each group is one batch that runs in
lockstep, sharing a cache, with no padding anywhere. Each row therefore computes exactly what it would compute
alone; under greedy decoding the tokens are identical to one-prompt runs. (With sampling the random stream is
shared across the batch, so draws differ from one-prompt runs; a fixed ``seed`` still reproduces the batch.)

**Stopping.** A row stops at ``max_new_tokens``, when it samples ``eot_id`` (not returned), when its new tokens
end with one of the ``stop`` sequences (the sequence is not returned; ``stream`` holds back tokens that might
be the start of a stop sequence until that is decided), or when a ``stop`` callable returns True for the list
of its new tokens so far (the token that triggered it *is* returned).
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence, Union

import torch
from torch import nn

from scratchllm.errors import ConfigError, InputError
from scratchllm.generation.fastpath import DecodeShortcuts, is_compiled, shortcuts_for
from scratchllm.generation.sampling import SamplingConfig, apply_repetition_penalty, sample_next

Prompt = Union[Sequence[int], torch.Tensor]
StopCallable = Callable[[list[int]], bool]
Stop = Union[Sequence[Union[int, Sequence[int]]], StopCallable, None]


@dataclass(frozen=True)
class _Settings:
    sampling: SamplingConfig
    eot_id: int | None
    stop_sequences: tuple[tuple[int, ...], ...]
    stop_fn: StopCallable | None


# ------------------------------------------------------------------------------------------- public API
def stream(
    model: nn.Module,
    prompt_ids: Prompt,
    max_new_tokens: int,
    *,
    sampling: SamplingConfig | None = None,
    stop: Stop = None,
    eot_id: int | None = None,
    **overrides: Any,
) -> Iterator[int]:
    """Yield the new token ids of one prompt (a list of ints or a 1-D tensor) one at a time.

    Arguments as in ``generate``; they are checked when ``stream`` is called, before the first token. Grad mode
    and the model's train/eval mode are switched only inside each step, never across a ``yield``, so the caller
    may stop iterating at any point and nothing is left changed.
    """
    rows, batched = _as_prompts(prompt_ids)
    if batched:
        raise InputError("stream() takes one prompt (a list of ints or a 1-D tensor); use generate() for a batch")
    settings = _make_settings(model, max_new_tokens, sampling, overrides, stop, eot_id)
    prompts = _prepare_prompts(model, rows, settings)
    generator = _make_generator(model, settings.sampling.seed)
    return (token for _, token in _stream_rows(model, prompts, max_new_tokens, settings, generator))


def generate(
    model: nn.Module,
    prompt_ids: Prompt | Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    sampling: SamplingConfig | None = None,
    stop: Stop = None,
    eot_id: int | None = None,
    **overrides: Any,
) -> list[int] | list[list[int]]:
    """Generate up to ``max_new_tokens`` new token ids and return them (the prompt is not included).

    prompt_ids: one prompt (list of ints or 1-D tensor) → ``list[int]``; a batch (list of lists, any lengths, or
        a 2-D tensor) → ``list[list[int]]`` in the same order.
    sampling: a ``SamplingConfig`` (temperature, top_k, top_p, min_p, repetition_penalty, seed, use_cache,
        on_overflow); ``SamplingConfig()``'s defaults when None.
    **overrides: any of those fields as a keyword (``temperature=0.8, top_k=50``), changing it in ``sampling``.
    stop: token-id sequences that end generation (an int is a one-token sequence), or a callable given the
        new tokens so far that returns True to stop.
    eot_id: the end-of-text id: generation stops when it is sampled, and an empty prompt starts from it.
    """
    rows, batched = _as_prompts(prompt_ids)
    if not batched:
        return list(stream(model, rows[0], max_new_tokens, sampling=sampling, stop=stop, eot_id=eot_id, **overrides))
    settings = _make_settings(model, max_new_tokens, sampling, overrides, stop, eot_id)
    prompts = _prepare_prompts(model, rows, settings)
    generator = _make_generator(model, settings.sampling.seed)
    context = model.config.context_length
    groups: dict[int, list[int]] = {}
    for i, prompt in enumerate(prompts):
        groups.setdefault(min(len(prompt), context), []).append(i)
    outputs: list[list[int]] = [[] for _ in prompts]
    for length in sorted(groups):
        members = groups[length]
        for row, token in _stream_rows(model, [prompts[i] for i in members], max_new_tokens, settings, generator):
            outputs[members[row]].append(token)
    return outputs


# ------------------------------------------------------------------------------------ argument handling
def _is_int(x: object) -> bool:
    if isinstance(x, bool):
        return False
    if isinstance(x, torch.Tensor):
        return x.dim() == 0 and not x.is_floating_point()
    return hasattr(x, "__index__")


def _as_prompts(prompt_ids: object) -> tuple[list[list[int]], bool]:
    """Normalise the prompt argument to a list of rows and say whether it was a batch."""
    if isinstance(prompt_ids, torch.Tensor):
        if prompt_ids.is_floating_point():
            raise InputError("prompt_ids must hold integer token ids, got a floating-point tensor")
        if prompt_ids.dim() == 1:
            return [prompt_ids.tolist()], False
        if prompt_ids.dim() == 2:
            return prompt_ids.tolist(), True
        raise InputError(f"prompt_ids tensor must be 1-D (one prompt) or 2-D (a batch), got {prompt_ids.dim()}-D")
    if isinstance(prompt_ids, (str, bytes)) or not isinstance(prompt_ids, Sequence):
        raise InputError(
            f"prompt_ids must be token ids (list of ints, or list of lists for a batch), got "
            f"{type(prompt_ids).__name__}; encode text with the tokenizer first"
        )
    items = list(prompt_ids)
    if all(_is_int(x) for x in items):
        return [[int(x) for x in items]], False
    if all(isinstance(x, torch.Tensor) or (isinstance(x, Sequence) and not isinstance(x, str)) for x in items):
        rows = []
        for x in items:
            row = x.tolist() if isinstance(x, torch.Tensor) else list(x)
            if not all(_is_int(t) for t in row):
                raise InputError("every prompt in a batch must be a list of integer token ids")
            rows.append([int(t) for t in row])
        return rows, True
    raise InputError("prompt_ids must be a list of ints (one prompt) or a list of lists of ints (a batch), not a mix")


def _parse_stop(stop: Stop) -> tuple[tuple[tuple[int, ...], ...], StopCallable | None]:
    if stop is None:
        return (), None
    if callable(stop):
        return (), stop
    if isinstance(stop, (str, bytes)) or not isinstance(stop, Sequence):
        raise ConfigError(
            "stop must be a list of token-id sequences or a callable(new_ids) -> bool; "
            "encode stop strings with the tokenizer first"
        )
    sequences = []
    for item in stop:
        if _is_int(item):
            sequences.append((int(item),))  # type: ignore[call-overload]
            continue
        seq = item.tolist() if isinstance(item, torch.Tensor) else item
        is_ids = isinstance(seq, Sequence) and not isinstance(seq, (str, bytes)) and all(_is_int(t) for t in seq)
        if not is_ids or not seq:
            raise ConfigError(f"each stop sequence must be a non-empty list of token ids, got {item!r}")
        sequences.append(tuple(int(t) for t in seq))
    return tuple(sequences), None


def _make_settings(
    model: nn.Module,
    max_new_tokens: int,
    sampling: SamplingConfig | None,
    overrides: dict[str, Any],
    stop: Stop,
    eot_id: int | None,
) -> _Settings:
    if not hasattr(model, "config") or not hasattr(model.config, "context_length"):
        raise ConfigError("generate needs a scratchllm GPT (a model with .config.context_length and make_caches)")
    if not _is_int(max_new_tokens) or int(max_new_tokens) < 0:
        raise ConfigError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if sampling is not None and not isinstance(sampling, SamplingConfig):
        raise ConfigError(
            f"sampling must be a SamplingConfig, got {type(sampling).__name__}; "
            f"SamplingConfig.from_mapping(values) builds one from a dict"
        )
    config = (sampling or SamplingConfig()).replace(**overrides)  # the keywords are checked here, like the object
    vocab = model.config.vocab_size
    if eot_id is not None and (not _is_int(eot_id) or not 0 <= int(eot_id) < vocab):
        raise ConfigError(f"eot_id must be a token id in [0, {vocab}), got {eot_id!r}")
    sequences, fn = _parse_stop(stop)
    return _Settings(
        sampling=config, eot_id=None if eot_id is None else int(eot_id), stop_sequences=sequences, stop_fn=fn
    )


def _prepare_prompts(model: nn.Module, rows: list[list[int]], settings: _Settings) -> list[list[int]]:
    vocab, context = model.config.vocab_size, model.config.context_length
    prompts = []
    for row in rows:
        if not row:
            if settings.eot_id is None:
                raise InputError(
                    "the prompt is empty: give at least one token id, or pass eot_id=<end-of-text id> to start "
                    "generation from the end-of-text token"
                )
            row = [settings.eot_id]
        bad = [t for t in row if not 0 <= t < vocab]
        if bad:
            raise InputError(
                f"prompt token id {bad[0]} is outside the model's vocabulary of {vocab}; "
                f"the tokenizer and model.vocab_size must agree"
            )
        if len(row) > context and settings.sampling.on_overflow == "stop":
            warnings.warn(
                f"prompt of {len(row)} tokens is longer than model.context_length={context}; "
                f"only its last {context} tokens are used",
                stacklevel=3,
            )
        prompts.append(row)
    return prompts


def _make_generator(model: nn.Module, seed: int | None) -> torch.Generator | None:
    if seed is None:
        return None
    generator = torch.Generator(device=_device(model))
    generator.manual_seed(int(seed))
    return generator


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


# ---------------------------------------------------------------------------------------- the decode loop
@contextmanager
def _inference(model: nn.Module, shortcuts: DecodeShortcuts | None = None) -> Iterator[None]:
    """Eval mode, inference mode, eager and the decode shortcuts for one step, then restore the model as it was.

    Eager: a model compiled for training (``compile=true``; the end-of-run sample) runs its plain forward here. Its
    graph was traced for training shapes under autocast and grad; a decode step (no autocast, inference mode, one
    token at a growing ``start_pos``) failed those guards and recompiled 4 times for the default run's 400-token
    sample: ~13 s with a warm compile cache. Eager, the final validation and the sample together take ~2 s.
    """
    modes = [(m, m.training) for m in model.modules()] if model.training else []
    if modes:
        model.eval()
    eager = torch.compiler.set_stance("force_eager") if is_compiled(model) else nullcontext()
    try:
        with torch.inference_mode(), eager, (shortcuts or nullcontext()):
            yield
    finally:
        for module, mode in modes:
            module.training = mode


def _decode_group(
    model: nn.Module,
    prompts: list[list[int]],
    max_new_tokens: int,
    settings: _Settings,
    generator: torch.Generator | None,
) -> Iterator[list[int]]:
    """Decode prompts whose (cropped) lengths are equal in lockstep; yield one new token per row per step.

    ``window`` is how many of each row's last tokens the model sees; ``cached`` how many of those the KV cache
    already holds (0 = the cache needs a prefill).
    """
    context = model.config.context_length
    keep = max(1, context // 2)
    histories = [list(p) for p in prompts]  # full prompt + new tokens (the repetition penalty sees all of it)
    window = min(len(histories[0]), context)
    assert all(min(len(h), context) == window for h in histories), "a group must share one prompt length"
    device = _device(model)
    caches = None
    if settings.sampling.use_cache:
        with _inference(model):
            caches = model.make_caches(len(prompts), max_len=min(context, window + max_new_tokens))
    cached = 0
    shortcuts = shortcuts_for(model)
    for step in range(max_new_tokens):
        if window > context:
            if settings.sampling.on_overflow == "stop":
                warnings.warn(
                    f"generation stopped after {step} new tokens: the sequence reached "
                    f"model.context_length={context}; pass on_overflow='slide' to keep generating",
                    stacklevel=2,
                )
                return
            window, cached = keep, 0  # slide: re-prefill the last `keep` tokens at positions 0…
        with _inference(model, shortcuts):
            if caches is not None:
                fresh = window - cached
                idx = torch.tensor([h[-fresh:] for h in histories], dtype=torch.long, device=device)
                logits, _ = model(idx, caches=caches, start_pos=cached)
                cached = window
            else:
                idx = torch.tensor([h[-window:] for h in histories], dtype=torch.long, device=device)
                logits, _ = model(idx)
            logits = logits[:, -1, :]
            s = settings.sampling
            if s.repetition_penalty is not None:
                logits = apply_repetition_penalty(logits, histories, s.repetition_penalty)
            tokens = sample_next(
                logits, temperature=s.temperature, top_k=s.top_k, top_p=s.top_p, min_p=s.min_p, generator=generator
            ).tolist()
        for history, token in zip(histories, tokens):
            history.append(token)
        window += 1
        yield tokens


class _StopMatcher:
    """Per-row stop logic: eot, stop sequences (held back while they may still match) and a stop callable."""

    def __init__(self, settings: _Settings) -> None:
        self.settings = settings
        self.new: list[int] = []  # every non-eot token sampled for this row
        self.held: list[int] = []  # the suffix of `new` not yet emitted
        self.done = False

    def push(self, token: int) -> list[int]:
        """Feed one sampled token; return the tokens that can be emitted now (sets ``done`` when stopped)."""
        s = self.settings
        if s.eot_id is not None and token == s.eot_id:
            self.done = True
            return self.flush()
        self.new.append(token)
        self.held.append(token)
        for seq in s.stop_sequences:
            if len(self.new) >= len(seq) and tuple(self.new[-len(seq) :]) == seq:
                self.done = True
                out, self.held = self.held[: max(0, len(self.held) - len(seq))], []
                return out
        if s.stop_fn is not None and s.stop_fn(list(self.new)):
            self.done = True
            return self.flush()
        pending = self._pending_prefix()
        out = self.held[: len(self.held) - pending]
        self.held = self.held[len(self.held) - pending :]
        return out

    def _pending_prefix(self) -> int:
        """Length of the longest suffix of ``held`` that is a proper prefix of some stop sequence."""
        best = 0
        for seq in self.settings.stop_sequences:
            for k in range(min(len(seq) - 1, len(self.held)), best, -1):
                if tuple(self.held[-k:]) == seq[:k]:
                    best = k
                    break
        return best

    def flush(self) -> list[int]:
        out, self.held = self.held, []
        return out


def _stream_rows(
    model: nn.Module,
    prompts: list[list[int]],
    max_new_tokens: int,
    settings: _Settings,
    generator: torch.Generator | None,
) -> Iterator[tuple[int, int]]:
    """Yield (row, token) events for one equal-length group until every row has stopped."""
    matchers = [_StopMatcher(settings) for _ in prompts]
    steps = _decode_group(model, prompts, max_new_tokens, settings, generator)
    try:
        for tokens in steps:
            for row, (matcher, token) in enumerate(zip(matchers, tokens)):
                if matcher.done:
                    continue
                for out in matcher.push(token):
                    yield row, out
            if all(m.done for m in matchers):
                return
        for row, matcher in enumerate(matchers):  # budget or context used up: release held-back tokens
            for out in matcher.flush():
                yield row, out
    finally:
        steps.close()
