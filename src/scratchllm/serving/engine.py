"""One loaded model answering requests one at a time: the part of the server that knows nothing about HTTP.

**Why one at a time.** Decoding mutates shared state: the decode shortcuts swap the model's linear layers for the
duration of a step, and in bfloat16 they pack weight copies. Two generations interleaving on one model would see
each other's half-applied changes. So requests are *serialised*: a lock admits one job to the model, the others
wait their turn (at most ``max_queue`` of them; more get "busy" at once rather than an unbounded wait). On a CPU
the model already uses every core for one request, so batching would buy little here.

**Cancellation.** A job carries a ``cancelled`` flag that the HTTP side sets when its client goes away; the
decode loop checks it between tokens and stops, so a closed browser tab frees the model within one token.

A job's output is a series of events handed to ``emit`` (called from the worker thread): ``("text", piece,
token_ids, logprobs)`` as text becomes final, then ``("done", finish_reason, usage)``, or ``("error", message,
status)`` (400 for a user's mistake found only while generating, 500 for a bug).

**Log-probabilities** (a job's ``logprobs``: how many alternatives to report, None = none at all) are the
model's own: log-softmax of its raw logits at each step, before temperature, filters or repetition penalty change
what is sampled (vLLM's default; a sampled token can therefore be unlikely under its reported number). They are
read by a forward hook on the model for the length of the job, not by a second forward pass: each decode step
calls the model exactly once, and the tokens that come out of ``stream`` are always the first of the sampled
ones, in order (an end-of-text or a stop sequence only drops tokens at the end), so the n-th token out goes with
the n-th call's logits. ``logprobs`` in a text event is then one ``TokenLogprob`` per token id (None when the job
asked for none).
"""

from __future__ import annotations

import collections
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch

from scratchllm.errors import InputError, ScratchLLMError
from scratchllm.generation.generate import stream
from scratchllm.generation.sampling import SamplingConfig
from scratchllm.generation.text import IncrementalDecoder, StopStrings
from scratchllm.serving.inspect import inspect
from scratchllm.tokenizers import Tokenizer

Emit = Callable[[tuple[Any, ...]], None]


class Busy(Exception):
    """More requests are waiting than ``max_queue`` allows."""


@dataclass
class Job:
    prompt_ids: list[int]
    max_tokens: int
    sampling: SamplingConfig
    stop_ids: list[int] = field(default_factory=list)  # token ids that end the answer (chat's end of turn)
    stop_strings: list[str] = field(default_factory=list)
    logprobs: int | None = None  # report each token's log-probability and this many top alternatives
    cancelled: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class TokenLogprob:
    id: int
    logprob: float
    top: list[tuple[int, float]]  # the most likely ids at that step, most likely first


@contextmanager
def _logit_rows(model: torch.nn.Module, wanted: bool) -> Iterator[collections.deque[torch.Tensor] | None]:
    """While inside, every forward of ``model`` appends the log-probabilities of its last position (float32, one
    row: ``stream`` decodes one prompt) to the yielded deque; None and no hook when not ``wanted``."""
    if not wanted:
        yield None
        return
    rows: collections.deque[torch.Tensor] = collections.deque()

    def record(module: torch.nn.Module, args: Any, output: Any) -> None:
        logits = output[0] if isinstance(output, tuple) else output
        rows.append(torch.log_softmax(logits[0, -1].float(), dim=-1).cpu())

    handle = model.register_forward_hook(record)
    try:
        yield rows
    finally:
        handle.remove()


def _finite(value: torch.Tensor) -> float:
    """JSON has no -inf: a token the model rules out entirely gets a very negative finite number instead."""
    return max(float(value), -9999.0)


def _token_logprob(row: torch.Tensor, token: int, top: int) -> TokenLogprob:
    values, ids = row.topk(min(top, row.numel()))
    return TokenLogprob(token, _finite(row[token]), [(int(i), _finite(v)) for v, i in zip(values, ids)])


class Engine:
    def __init__(self, model: torch.nn.Module, tokenizer: Tokenizer, *, name: str, max_queue: int = 8,
                 max_prompt_tokens: int | None = None, max_tokens_limit: int = 1024) -> None:
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.max_queue, self.max_tokens_limit = max_queue, max_tokens_limit
        self.max_prompt_tokens = max_prompt_tokens or 4 * model.config.context_length
        self._model_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._pending = 0  # admitted jobs: running + waiting for the model
        self.created = int(time.time())

    # ------------------------------------------------------------------------------------------ admission
    def check(self, job: Job) -> None:
        """Refuse, before queueing, what the limits do not allow (``InputError`` → a 400)."""
        if len(job.prompt_ids) > self.max_prompt_tokens:
            raise InputError(f"the prompt has {len(job.prompt_ids)} tokens; this server accepts at most "
                             f"{self.max_prompt_tokens} (serve's max_prompt_tokens)")
        vocab = self.model.config.vocab_size
        bad = next((t for t in job.prompt_ids if not 0 <= t < vocab), None)
        if bad is not None:
            raise InputError(f"prompt token id {bad} is outside the model's vocabulary of {vocab} ids")
        if not 0 <= job.max_tokens <= self.max_tokens_limit:
            raise InputError(f"max_tokens must be between 0 and {self.max_tokens_limit}, got {job.max_tokens}")

    def admit(self) -> None:
        with self._count_lock:
            if self._pending >= self.max_queue:
                raise Busy(f"{self._pending} requests are already queued (max_queue={self.max_queue}); retry later")
            self._pending += 1

    @property
    def pending(self) -> int:
        return self._pending

    # --------------------------------------------------------------------------------------------- running
    def run(self, job: Job, emit: Emit) -> None:
        """Generate for an admitted job (blocking; call from a worker thread), emitting events as they come.

        The slot is given back *before* the last event goes out: a client that sends its next request the moment
        it reads "done" must find room for it."""
        final: tuple[Any, ...] | None = None
        try:
            with self._model_lock:
                if not job.cancelled.is_set():
                    final = self._generate(job, emit)
        except Exception as err:  # noqa: BLE001 - the client gets the message, the server carries on
            final = ("error", str(err) or type(err).__name__, 400 if isinstance(err, ScratchLLMError) else 500)
        finally:
            with self._count_lock:
                self._pending -= 1
        if final is not None:
            emit(final)

    def _generate(self, job: Job, emit: Emit) -> tuple[Any, ...] | None:
        """Emit the text events; return the closing one (None when the job was cancelled)."""
        with _logit_rows(self.model, job.logprobs is not None) as rows:
            tokens = stream(self.model, job.prompt_ids, job.max_tokens, sampling=job.sampling,
                            stop=[[t] for t in job.stop_ids] or None, eot_id=self.tokenizer.eot_id)
            decoder, stops = IncrementalDecoder(self.tokenizer), StopStrings(job.stop_strings)
            count, pending_ids, finish = 0, [], "length"
            pending_lps: list[TokenLogprob] | None = None if rows is None else []
            try:
                for token in tokens:
                    if job.cancelled.is_set():
                        return None
                    count += 1
                    pending_ids.append(token)
                    if rows is not None and pending_lps is not None:
                        pending_lps.append(_token_logprob(rows.popleft(), token, job.logprobs or 0))
                    piece = stops.push(decoder.push(token))
                    if piece:
                        emit(("text", piece, pending_ids, pending_lps))
                        pending_ids, pending_lps = [], None if rows is None else []
                    if stops.done:
                        finish = "stop"
                        break
                else:
                    tail = stops.push(decoder.flush())
                    tail += "" if stops.done else stops.flush()
                    if tail or pending_ids:
                        emit(("text", tail, pending_ids, pending_lps))
                    # fewer tokens than asked and no stop string: an end-of-text or a stop token ended it
                    finish = "stop" if stops.done or count < job.max_tokens else "length"
            finally:
                tokens.close()
        usage = {"prompt_tokens": len(job.prompt_ids), "completion_tokens": count,
                 "total_tokens": len(job.prompt_ids) + count}
        return ("done", finish, usage)

    def inspect(self, ids: list[int], top: int = 5) -> dict[str, Any]:
        """Tokens, their probabilities and top alternatives, and attention, of the last context-window of ids."""
        ids = ids[-self.model.config.context_length:]
        with self._model_lock:
            seen = inspect(self.model, ids)
        token = self.tokenizer.token_bytes
        return {
            "tokens": [
                {"id": t, "text": token(t).decode("utf-8", errors="replace"), "p": seen.token_probability(i),
                 "top": [{"id": a, "text": token(a).decode("utf-8", errors="replace"), "p": p}
                         for a, p in seen.alternatives(i, top)]}
                for i, t in enumerate(ids)
            ],
            # 4 decimals: a heatmap needs no more, and it keeps the JSON of a 12-layer model small
            "attention": (seen.attention * 1e4).round().div(1e4).tolist() if seen.attention is not None else None,
        }
