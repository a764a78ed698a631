"""Text on top of token streams: prompts, incremental BPE decoding, stop strings that span tokens, stats."""

from __future__ import annotations

from typing import Callable

import pytest
import torch
from torch import nn

from scratchllm.errors import ConfigError, InputError
from scratchllm.generation import SamplingConfig, generate
from scratchllm.generation.text import (
    IncrementalDecoder, StopStrings, TextStream, check_prompt_characters, encode_prompt,
)
from scratchllm.model import GPT, KVCache, ModelConfig
from scratchllm.tokenizers import CharTokenizer, GPT2Tokenizer

GPT2 = GPT2Tokenizer()


class ScriptedModel(nn.Module):
    """Stands in for a GPT: puts all probability on ``script[i]`` as the i-th new token after the prompt, so a
    test can make 'generation' produce exactly the text it needs (works with and without the KV cache)."""

    def __init__(self, script: list[int], prompt_len: int, vocab_size: int = 50257) -> None:
        super().__init__()
        self.config = ModelConfig(vocab_size=vocab_size, context_length=256, n_layer=1, n_head=1, n_embd=8)
        self.script, self.prompt_len = script, prompt_len
        self.anchor = nn.Parameter(torch.zeros(1))  # gives the model a device

    def make_caches(self, batch_size: int, max_len: int | None = None) -> list[KVCache]:
        return []

    def forward(self, idx: torch.Tensor, *, caches: list | None = None, start_pos: int = 0):
        B, T = idx.shape
        logits = torch.zeros(B, T, self.config.vocab_size)
        step = start_pos + T - self.prompt_len  # index of the next new token
        logits[:, -1, self.script[min(step, len(self.script) - 1)]] = 10.0
        return logits, None


def run_text(script_text: str, stop: list[str], tokenizer=GPT2, use_cache: bool = True) -> tuple[list[str], TextStream]:
    prompt = tokenizer.encode("Once")
    model = ScriptedModel(tokenizer.encode(script_text), len(prompt), tokenizer.vocab_size)
    text = TextStream(model, tokenizer, prompt, len(tokenizer.encode(script_text)), stop=stop,
                      sampling=SamplingConfig(temperature=0, use_cache=use_cache))
    return list(text), text


# ------------------------------------------------------------------------------------------ decoding
@pytest.mark.parametrize("text", ["naïve café — 東京 🙂🙂 ok", "’quotes’ and emoji 👩‍👩‍👧"])
def test_incremental_decoding_never_prints_half_a_character(text: str) -> None:
    ids = GPT2.encode(text)
    assert any("\ufffd" in GPT2.decode([i]) for i in ids)  # the text really splits characters across tokens
    decoder = IncrementalDecoder(GPT2)
    pieces = [decoder.push(i) for i in ids] + [decoder.flush()]
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)


def test_a_dangling_partial_character_is_released_at_the_end() -> None:
    ids = GPT2.encode("🙂")
    decoder = IncrementalDecoder(GPT2)
    assert decoder.push(ids[0]) == ""
    assert decoder.flush() == GPT2.decode(ids[:1])  # printed as it is once nothing more can come


def test_text_stream_of_a_real_model_equals_decoding_generate(tiny_model: Callable[..., GPT]) -> None:
    tokenizer = CharTokenizer([chr(c) for c in range(ord("A"), ord("A") + 64)], unknown="error")  # 64 ids
    model = tiny_model(vocab_size=64)
    prompt = tokenizer.encode("HELLO")
    pieces = list(TextStream(model, tokenizer, prompt, 20, sampling=SamplingConfig(temperature=0)))
    assert "".join(pieces) == tokenizer.decode(generate(model, prompt, 20, temperature=0))
    assert len(pieces) == 20  # one piece per token: streamed, not printed at the end


# ------------------------------------------------------------------------------------------ stop strings
def run_tokens(script: list[int], stop: list[str], use_cache: bool = True) -> tuple[str, TextStream]:
    prompt = GPT2.encode("Once")
    text = TextStream(ScriptedModel(script, len(prompt)), GPT2, prompt, len(script), stop=stop,
                      sampling=SamplingConfig(temperature=0, use_cache=use_cache))
    return "".join(text), text


@pytest.mark.parametrize("use_cache", [True, False])
def test_stop_string_in_any_token_spelling(use_cache: bool) -> None:
    # "\n\n" is one GPT-2 token, or two "\n" tokens: a stop given as one token sequence would miss a spelling.
    newline, double = GPT2.encode("\n"), GPT2.encode("\n\n")
    assert len(newline) == len(double) == 1
    head, tail = GPT2.encode(" one, two."), GPT2.encode("Three")
    for middle in (double, newline + newline):
        out, text = run_tokens(head + middle + tail, ["\n\n"], use_cache)
        assert out == " one, two."
        assert text.stats.new_tokens == len(head) + len(middle)  # generation stopped right there


def test_stop_string_inside_one_token() -> None:
    head = GPT2.encode(" one, two.")
    out, text = run_tokens(head + GPT2.encode("\n\n") + GPT2.encode("Three"), ["\n"])
    assert out == " one, two." and text.stats.new_tokens == len(head) + 1


def test_stop_string_spanning_several_tokens_is_never_printed() -> None:
    script = " The quick brown fox jumps. THE END and more"
    pieces, _ = run_text(script, ["THE END"])
    assert "".join(pieces) == " The quick brown fox jumps. "
    assert not any("THE" in p for p in pieces)  # the held-back prefix never leaked out


def test_a_possible_stop_prefix_is_released_when_it_does_not_complete() -> None:
    pieces, text = run_text(" THE ENDLESS road. THE END", ["THE END."])
    assert "".join(pieces) == " THE ENDLESS road. THE END"  # budget ran out: held text is released
    assert text.stats.new_tokens == len(GPT2.encode(" THE ENDLESS road. THE END"))


def test_earliest_of_several_stop_strings_wins() -> None:
    pieces, _ = run_text(" alpha beta gamma delta", ["delta", "beta"])
    assert "".join(pieces) == " alpha "


def test_stop_strings_unit() -> None:
    stops = StopStrings(["abc", "xy"])
    assert stops.push("12a") == "12" and stops.push("b") == "" and stops.push("d") == "abd"
    assert stops.push("x") == "" and stops.push("x") == "x" and stops.push("yz") == "" and stops.done
    assert StopStrings(["abc"]).push("zzabc") == "zz"
    with pytest.raises(ConfigError, match="non-empty"):
        StopStrings([""])


def test_end_of_text_stops_generation_and_is_not_printed() -> None:
    prompt = GPT2.encode("Once")
    script = GPT2.encode(" upon a time") + [GPT2.eot_id] + GPT2.encode(" never shown")
    model = ScriptedModel(script, len(prompt))
    text = TextStream(model, GPT2, prompt, 50, sampling=SamplingConfig(temperature=0))
    assert "".join(text) == " upon a time"
    assert text.stats.new_tokens == 3  # the end-of-text token ends the stream and is not counted


# ------------------------------------------------------------------------------------------ prompts
def test_empty_prompt_falls_back_to_eot_or_a_newline() -> None:
    assert encode_prompt(GPT2, "") == [GPT2.eot_id]
    chars = CharTokenizer(list("\nab"))
    assert encode_prompt(chars, "") == chars.encode("\n")
    with pytest.raises(InputError, match="no end-of-text token; give a prompt"):
        encode_prompt(CharTokenizer(list("ab"), unknown="replace"), "")  # "\n" would only be <unk>


def test_prompt_characters_outside_a_char_vocabulary() -> None:
    replace, strict = CharTokenizer(list("abc "), unknown="replace"), CharTokenizer(list("abc "), unknown="error")
    assert check_prompt_characters(replace, "a cab") is None and check_prompt_characters(GPT2, "ï€") is None
    assert check_prompt_characters(replace, "abxyx") == (
        "note: 2 prompt characters are not in the model's vocabulary and were replaced by <unk>: 'x', 'y'"
    )
    with pytest.raises(InputError, match=r"^1 prompt character is not in the model's vocabulary: 'x'; remove it"):
        check_prompt_characters(replace, "abx", unknown="error")  # the policy asks for an error
    # a model trained with unknown=error has no <unk> id: whatever the policy, the character cannot be encoded
    for policy in (None, "replace"):
        with pytest.raises(InputError, match=r"vocabulary, which has no <unk>: 'x'; remove it from the prompt"):
            check_prompt_characters(strict, "abx", unknown=policy)


def test_without_a_tokenizer_prompts_are_token_ids() -> None:
    assert encode_prompt(None, "12 7, 33") == [12, 7, 33]
    with pytest.raises(InputError, match="tokenizer="):
        encode_prompt(None, "hello")
    with pytest.raises(InputError, match="token ids"):
        encode_prompt(None, "")


def test_stats_count_tokens_and_time() -> None:
    pieces, text = run_text(" a b c d e f", [])
    s = text.stats
    assert s.prompt_tokens == 1 and s.new_tokens == 6 and s.seconds >= s.first_token_seconds > 0
    assert s.tokens_per_second == pytest.approx(6 / s.seconds)
    assert "6 tokens in" in s.summary() and "tokens/s" in s.summary()
