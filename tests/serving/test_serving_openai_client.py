"""The official ``openai`` client against ``python -m scratchllm.serve`` started as a user starts it (loopback,
free port, stopped at the end): the same tokens as ``generate``, streamed and not, and a dropped stream frees
the model."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest
from tests.serving import serving_fixtures  # noqa: F401 - puts experiments/ on the path
from serving_harness import running_server

from scratchllm.generation import SamplingConfig, generate
from scratchllm.generation.loading import load_for_generation

openai = pytest.importorskip("openai")
pytestmark = pytest.mark.slow


def test_openai_client_gets_generates_tokens(tiny_ckpt: Path, tmp_path: Path) -> None:
    model, tok = load_for_generation(tiny_ckpt, device="cpu")

    def want(prompt_ids: list[int], n: int, **sampling) -> str:
        ids = generate(model, prompt_ids, n, sampling=SamplingConfig(**{"top_k": None, **sampling}), eot_id=tok.eot_id)
        return tok.decode(ids)

    with running_server(tiny_ckpt, tmp_path) as base:
        client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=30)
        assert [m.id for m in client.models.list().data] == ["tiny-char"]

        prompt = tok.encode("ROMEO:")
        done = client.completions.create(model="tiny-char", prompt="ROMEO:", max_tokens=20, temperature=0)
        assert done.choices[0].text == want(prompt, 20, temperature=0)
        assert done.usage.prompt_tokens == len(prompt) and done.usage.completion_tokens == 20

        seeded = client.completions.create(model="tiny-char", prompt="ROMEO:", max_tokens=20, temperature=1.0,
                                           seed=5, extra_body={"top_k": 10})
        assert seeded.choices[0].text == want(prompt, 20, temperature=1.0, seed=5, top_k=10) != done.choices[0].text

        pieces = client.completions.create(model="tiny-char", prompt="ROMEO:", max_tokens=20, temperature=0,
                                           stream=True)
        assert "".join(c.choices[0].text for c in pieces) == done.choices[0].text

        messages = [{"role": "user", "content": "Who are you?"}]
        chat_prompt = tok.encode("User: Who are you?\nAssistant:")
        reply = client.chat.completions.create(model="tiny-char", messages=messages, max_tokens=16, temperature=0)
        assert want(chat_prompt, 16, temperature=0).startswith(reply.choices[0].message.content)
        streamed = client.chat.completions.create(model="tiny-char", messages=messages, max_tokens=16,
                                                  temperature=0, stream=True)
        chunks = list(streamed)
        assert chunks[0].choices[0].delta.role == "assistant"
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == reply.choices[0].message.content

        # Log-probabilities in both of OpenAI's shapes, as the client parses them, streamed and not.
        scored = client.completions.create(model="tiny-char", prompt="ROMEO:", max_tokens=8, temperature=0,
                                           logprobs=2)
        lp = scored.choices[0].logprobs
        assert "".join(lp.tokens) == scored.choices[0].text == done.choices[0].text[:8]
        assert len(lp.token_logprobs) == 8 and all(v <= 0 for v in lp.token_logprobs)
        assert all(top[tok] == lp_ == max(top.values()) and len(top) == 2
                   for top, tok, lp_ in zip(lp.top_logprobs, lp.tokens, lp.token_logprobs))  # greedy: the best
        parts = list(client.completions.create(model="tiny-char", prompt="ROMEO:", max_tokens=8, temperature=0,
                                               logprobs=2, stream=True))
        assert sum((c.choices[0].logprobs.token_logprobs for c in parts if c.choices[0].logprobs), []) \
            == lp.token_logprobs
        chat_lp = client.chat.completions.create(model="tiny-char", messages=messages, max_tokens=6, temperature=0,
                                                 logprobs=True, top_logprobs=3)
        content = chat_lp.choices[0].logprobs.content
        assert "".join(t.token for t in content) == chat_lp.choices[0].message.content
        assert all(len(t.top_logprobs) == 3 and t.top_logprobs[0].logprob == t.logprob for t in content)
        chat_parts = list(client.chat.completions.create(model="tiny-char", messages=messages, max_tokens=6,
                                                         temperature=0, logprobs=True, top_logprobs=3, stream=True))
        assert [t.logprob for c in chat_parts if c.choices[0].logprobs for t in c.choices[0].logprobs.content] \
            == [t.logprob for t in content]

        with pytest.raises(openai.BadRequestError) as err:
            client.completions.create(model="tiny-char", prompt="A", max_tokens=-1)
        assert "max_tokens" in str(err.value)

        # A client that leaves mid-stream: the server stops that job and the queue empties.
        stream = client.completions.create(model="tiny-char", prompt="A", max_tokens=500, stream=True)
        next(iter(stream))
        stream.close()
        for _ in range(100):
            with urllib.request.urlopen(base + "/health", timeout=5) as r:
                if json.load(r)["queued"] == 0:
                    break
            time.sleep(0.1)
        else:
            pytest.fail("the abandoned stream kept its slot")
        again = client.completions.create(model="tiny-char", prompt="ROMEO:", max_tokens=20, temperature=0)
        assert again.choices[0].text == done.choices[0].text
