"""The decode loop: cache vs no cache, past the context, stopping, batches, reproducibility, bad inputs."""

from __future__ import annotations

import itertools
import warnings
from typing import Callable

import pytest
import torch

from scratchllm.errors import ConfigError, InputError
from scratchllm.generation import apply_repetition_penalty, generate, stream
from scratchllm.model import GPT

VARIANTS = list(itertools.product(("sdpa", "explicit"), ("learned", "rope"), (4, 2, 1)))
PROMPT = [5, 17, 3, 42, 8]


def reference_greedy(model: GPT, prompt: list[int], n: int, penalty: float | None = None) -> list[int]:
    """The documented policy spelled out with full forwards: crop to the context, slide to half of it."""
    context = model.config.context_length
    seq, window, out = list(prompt), min(len(prompt), context), []
    with torch.no_grad():
        for _ in range(n):
            if window > context:
                window = context // 2
            logits = model(torch.tensor([seq[-window:]]))[0][0, -1]
            if penalty is not None:
                logits = apply_repetition_penalty(logits, seq, penalty)
            token = int(logits.argmax())
            seq.append(token)
            out.append(token)
            window += 1
    return out


def first_index(tokens: list[int], seq: list[int]) -> int:
    return next(i for i in range(len(tokens)) if tokens[i : i + len(seq)] == seq)


# ------------------------------------------------------------------------------------- cache vs no cache
@pytest.mark.parametrize("attention, position, n_kv_head", VARIANTS)
def test_greedy_with_and_without_cache_is_identical(
    tiny_model: Callable[..., GPT], attention: str, position: str, n_kv_head: int
) -> None:
    model = tiny_model(attention=attention, position=position, n_kv_head=n_kv_head)
    # 30 new tokens from a 5-token prompt with a 16-token context: includes two slides (re-prefills).
    cached = generate(model, PROMPT, 30, temperature=0)
    uncached = generate(model, PROMPT, 30, temperature=0, use_cache=False)
    assert cached == uncached == reference_greedy(model, PROMPT, 30)
    assert len(cached) == 30 and len(set(cached)) > 3  # a real sequence, not one repeated token


@pytest.mark.parametrize("attention, position, n_kv_head", VARIANTS)
def test_cached_step_logits_match_a_full_forward(
    tiny_model: Callable[..., GPT], attention: str, position: str, n_kv_head: int
) -> None:
    # The usual small init (logits of order 1), where fp32 rounding stays well inside 1e-5.
    model = tiny_model(attention=attention, position=position, n_kv_head=n_kv_head, init_std=0.02)
    seq = torch.randint(0, 65, (2, 16))
    with torch.no_grad():
        full, _ = model(seq)
        caches = model.make_caches(2)
        prefill, _ = model(seq[:, :6], caches=caches, start_pos=0)
        torch.testing.assert_close(prefill, full[:, :6], rtol=0, atol=1e-5)
        for pos in range(6, 16):
            step, _ = model(seq[:, pos : pos + 1], caches=caches, start_pos=pos)
            torch.testing.assert_close(step[:, 0], full[:, pos], rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------- past the context
@pytest.mark.parametrize("position", ["learned", "rope"])
def test_sliding_past_the_context_has_no_shape_error(tiny_model: Callable[..., GPT], position: str) -> None:
    model = tiny_model(position=position)
    out = generate(model, PROMPT, 60, temperature=0)
    assert len(out) == 60 and all(0 <= t < 65 for t in out)
    assert out == reference_greedy(model, PROMPT, 60)
    sampled = generate(model, PROMPT, 60, top_k=10, top_p=0.9, min_p=0.05, repetition_penalty=1.3, seed=0)
    assert len(sampled) == 60 and all(0 <= t < 65 for t in sampled)


def test_on_overflow_stop_ends_at_the_context_with_a_warning(tiny_model: Callable[..., GPT]) -> None:
    model = tiny_model()
    with pytest.warns(UserWarning, match="context_length=16"):
        out = generate(model, PROMPT, 60, temperature=0, on_overflow="stop")
    # 5 prompt tokens + 12 new = 17: the 12th new token is predicted from the full 16-token window.
    assert out == reference_greedy(model, PROMPT, 12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning when the budget ends first
        assert generate(model, PROMPT, 12, temperature=0, on_overflow="stop") == out


def test_a_prompt_longer_than_the_context_is_cropped_to_its_end(tiny_model: Callable[..., GPT]) -> None:
    model = tiny_model(position="rope")
    long_prompt = torch.randint(0, 65, (40,)).tolist()
    out = generate(model, long_prompt, 10, temperature=0)
    assert out == generate(model, long_prompt[-16:], 10, temperature=0)
    assert out == generate(model, long_prompt, 10, temperature=0, use_cache=False)
    with pytest.warns(UserWarning, match="longer than model.context_length"):
        generate(model, long_prompt, 1, temperature=0, on_overflow="stop")


# -------------------------------------------------------------------------------------------- stopping
def test_stop_sequences_eot_and_callables(tiny_model: Callable[..., GPT]) -> None:
    model = tiny_model()
    ref = generate(model, PROMPT, 20, temperature=0)
    assert isinstance(ref, list) and len(ref) == 20

    seq = ref[6:8]
    assert generate(model, PROMPT, 20, temperature=0, stop=[seq]) == ref[: first_index(ref, seq)]
    assert generate(model, PROMPT, 20, temperature=0, stop=[[99, 98], seq]) == ref[: first_index(ref, seq)]
    # A bare int is a one-token stop sequence.
    assert generate(model, PROMPT, 20, temperature=0, stop=[ref[6]]) == ref[: ref.index(ref[6])]
    # A partial match that never completes is released, mid-way and at the very end.
    assert generate(model, PROMPT, 20, temperature=0, stop=[[ref[3], 99]]) == ref
    assert generate(model, PROMPT, 20, temperature=0, stop=[[ref[-1], 99, 98]]) == ref
    # eot ends generation and is not returned.
    assert generate(model, PROMPT, 20, temperature=0, eot_id=ref[9]) == ref[: ref.index(ref[9])]
    # A callable sees the new tokens so far; the token that triggers it is returned.
    seen: list[list[int]] = []
    out = generate(model, PROMPT, 20, temperature=0, stop=lambda new: seen.append(new) or len(new) == 4)
    assert out == ref[:4] and seen[-1] == ref[:4]


def test_stream_yields_the_same_tokens_one_at_a_time(tiny_model: Callable[..., GPT]) -> None:
    model = tiny_model()
    ref = generate(model, PROMPT, 20, temperature=0)
    it = stream(model, PROMPT, 20, temperature=0, stop=[ref[10:12]])
    first = next(it)
    assert isinstance(first, int) and first == ref[0]
    # Grad and train/eval state are only changed inside a step, never while the caller holds the iterator.
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
    assert [first, *it] == ref[: first_index(ref, ref[10:12])]
    assert list(stream(model, torch.tensor(PROMPT), 20, seed=3)) == generate(model, PROMPT, 20, seed=3)


# --------------------------------------------------------------------------------------------- batches
def test_batched_prompts_of_different_lengths_equal_individual_runs(tiny_model: Callable[..., GPT]) -> None:
    model = tiny_model(position="rope", n_kv_head=2)
    g = torch.Generator().manual_seed(5)
    prompts = [torch.randint(0, 65, (n,), generator=g).tolist() for n in (3, 7, 3, 1, 20, 7, 30)]
    batched = generate(model, prompts, 25, temperature=0)
    assert batched == [generate(model, p, 25, temperature=0) for p in prompts]
    # Per-row stopping: each row stops at its own eot / stop sequence, the others carry on.
    eot = batched[1][4]
    stopped = generate(model, prompts, 25, temperature=0, eot_id=eot, stop=[batched[0][2:4]])
    assert stopped == [generate(model, p, 25, temperature=0, eot_id=eot, stop=[batched[0][2:4]]) for p in prompts]
    assert stopped[1] == batched[1][: batched[1].index(eot)]
    # A 2-D tensor is a batch of equal-length prompts.
    rows = torch.tensor([prompts[0], prompts[2]])
    assert generate(model, rows, 5, temperature=0) == [batched[0][:5], batched[2][:5]]


# ------------------------------------------------------------------------------------- reproducibility
def test_seed_makes_sampling_reproducible_without_touching_the_global_rng(tiny_model: Callable[..., GPT]) -> None:
    model = tiny_model()
    state = torch.get_rng_state()
    a = generate(model, PROMPT, 30, temperature=1.5, seed=123)
    b = generate(model, PROMPT, 30, temperature=1.5, seed=123)
    c = generate(model, PROMPT, 30, temperature=1.5, seed=124)
    assert a == b and a != c
    assert torch.equal(state, torch.get_rng_state())
    assert generate(model, PROMPT, 30, top_k=1, seed=9) == generate(model, PROMPT, 30, temperature=0)


def test_repetition_penalty_in_the_loop_matches_the_reference(tiny_model: Callable[..., GPT]) -> None:
    model = tiny_model()
    out = generate(model, PROMPT, 30, temperature=0, repetition_penalty=1.8)
    assert out == reference_greedy(model, PROMPT, 30, penalty=1.8)
    assert out != generate(model, PROMPT, 30, temperature=0)


def test_model_modes_are_restored(tiny_model: Callable[..., GPT]) -> None:
    model = tiny_model(dropout=0.1)
    model.train()
    model.blocks[0].eval()  # a mixed state must survive too
    eval_out = generate(tiny_model(), PROMPT, 10, temperature=0)
    assert generate(model, PROMPT, 10, temperature=0) == eval_out  # dropout was off while generating
    assert model.training and not model.blocks[0].training and model.blocks[1].training


# -------------------------------------------------------------------------------------------- bad input
def test_empty_prompt_needs_an_eot_id(tiny_model: Callable[..., GPT]) -> None:
    model = tiny_model()
    with pytest.raises(InputError, match="eot_id"):
        generate(model, [], 5)
    with pytest.raises(InputError, match="eot_id"):
        generate(model, [[1, 2], []], 5)
    assert generate(model, [], 5, temperature=0, eot_id=0) == generate(model, [0], 5, temperature=0, eot_id=0)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(top_p=0.0), ConfigError, "top_p"),
        (dict(top_p=1.5), ConfigError, "top_p"),
        (dict(temperature=-1.0), ConfigError, "temperature"),
        (dict(top_k=0), ConfigError, "top_k"),
        (dict(min_p=2.0), ConfigError, "min_p"),
        (dict(repetition_penalty=0.0), ConfigError, "repetition_penalty"),
        (dict(on_overflow="wrap"), ConfigError, "on_overflow"),
        (dict(eot_id=65), ConfigError, "eot_id"),
        (dict(stop=[[]]), ConfigError, "stop"),
        (dict(stop="\n"), ConfigError, "stop"),
    ],
)
def test_bad_arguments_raise_clear_errors(
    tiny_model: Callable[..., GPT], kwargs: dict, error: type, match: str
) -> None:
    with pytest.raises(error, match=match) as info:
        generate(tiny_model(), PROMPT, 5, **kwargs)
    assert "\n" not in str(info.value)
    with pytest.raises(error, match=match):
        stream(tiny_model(), PROMPT, 5, **kwargs)  # checked eagerly, before the first next()


def test_bad_prompts_raise_input_error(tiny_model: Callable[..., GPT]) -> None:
    model = tiny_model()
    with pytest.raises(InputError, match="vocabulary"):
        generate(model, [1, 65], 5)
    with pytest.raises(InputError, match="tokenizer"):
        generate(model, "hello", 5)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="generate"):
        stream(model, [[1, 2], [3]], 5)
    with pytest.raises(ConfigError, match="max_new_tokens"):
        generate(model, PROMPT, -1)
    assert generate(model, PROMPT, 0) == []


# ------------------------------------------------------------------------------- stop logic on a script
class ScriptedModel(torch.nn.Module):
    """Predicts ``script[p]`` at absolute position p (cached or not), so the generated tokens are known."""

    def __init__(self, script: list[int], vocab_size: int = 10, context_length: int = 64) -> None:
        super().__init__()
        self.config = type("Config", (), dict(vocab_size=vocab_size, context_length=context_length))()
        self.script = script
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.calls = 0

    def make_caches(self, batch_size: int, max_len: int | None = None) -> list[None]:
        return []

    def forward(self, idx: torch.Tensor, caches: object = None, start_pos: int = 0) -> tuple[torch.Tensor, None]:
        self.calls += 1
        B, T = idx.shape
        logits = torch.zeros(B, T, self.config.vocab_size)
        for t in range(T):
            logits[:, t, self.script[(start_pos + t) % len(self.script)]] = 1.0
        return logits, None


@pytest.mark.parametrize("use_cache", [True, False])
def test_stop_sequences_with_overlapping_prefixes(use_cache: bool) -> None:
    # The prompt [0] sits at position 0, whose prediction is script[0]: the new tokens are the script itself.
    model = ScriptedModel([1, 2, 1, 1, 2, 3, 1, 1, 1, 2, 3, 4, 5, 6, 7, 8])
    new = [1, 2, 1, 1, 2, 3, 1, 1, 1, 2, 3, 4, 5, 6, 7, 8]
    assert generate(model, [0], 16, temperature=0, use_cache=use_cache) == new
    run = lambda stop: generate(model, [0], 16, temperature=0, use_cache=use_cache, stop=stop)  # noqa: E731
    assert run([[1, 1, 2, 3]]) == [1, 2]  # first match at new[2:6]
    assert run([[1, 1, 1, 2]]) == [1, 2, 1, 1, 2, 3]  # overlaps a failed partial match
    assert run([[2, 3, 4], [1, 1, 1]]) == [1, 2, 1, 1, 2, 3]  # the earliest completed sequence wins
    assert run([[7, 8, 9]]) == new  # partial match at the end is released
    assert list(stream(model, [0], 16, temperature=0, stop=[[1, 1, 1, 2]])) == [1, 2, 1, 1, 2, 3]


def test_stream_holds_back_only_a_possible_stop_prefix() -> None:
    model = ScriptedModel([1, 2, 1, 1, 2, 3, 4])
    tokens, steps_when_emitted = [], []
    for token in stream(model, [0], 7, temperature=0, stop=[[1, 1, 9]]):
        tokens.append(token)
        steps_when_emitted.append(model.calls)
    assert tokens == [1, 2, 1, 1, 2, 3, 4]
    # A "1" (or "1 1") could start the stop sequence: it waits until the next token rules that out.
    assert steps_when_emitted == [2, 2, 5, 5, 5, 6, 7]


@pytest.mark.parametrize("how", ["in place", "wrapped"])
def test_a_compiled_model_decodes_eagerly_without_compiling(tiny_model: Callable[..., GPT], how: str) -> None:
    """The end-of-run sample decodes with the model ``compile=true`` compiled for training: each decode shape
    would recompile (4 times, ~13 s for the default run's sample), so the steps run its plain forward."""
    import torch._dynamo

    model = tiny_model()
    expected = generate(model, PROMPT, 20, temperature=0.0)
    torch._dynamo.reset()
    graphs = torch._dynamo.utils.counters["stats"]
    before = graphs["unique_graphs"]
    compiled: torch.nn.Module = model
    if how == "in place":
        model.compile()
    else:
        compiled = torch.compile(model)
    calls: list[int] = []
    model.register_forward_hook(lambda *_: calls.append(1))  # the hooks still run: the forward is the model's own
    assert generate(compiled, PROMPT, 20, temperature=0.0) == expected
    assert graphs["unique_graphs"] == before  # nothing was traced or compiled
    assert len(calls) == 20  # a cached prefill + 19 steps, every one through the module
    with torch.no_grad():  # the model is still compiled outside generation
        compiled(torch.tensor([PROMPT]))
    assert graphs["unique_graphs"] == before + 1
