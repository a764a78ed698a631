"""The HTTP API in-process (FastAPI's TestClient): generate's tokens, SSE chunks, chat rendering, limits, errors."""

from __future__ import annotations

import json
import threading

import pytest
import torch
from fastapi.testclient import TestClient
from tests.serving.serving_fixtures import tiny_model, tiny_tokenizer

from scratchllm.generation import SamplingConfig, generate
from scratchllm.serving.api import create_app
from scratchllm.serving.chat import IM_END, IM_START, render_chat
from scratchllm.serving.engine import Busy, Engine, Job


@pytest.fixture
def engine() -> Engine:
    tok = tiny_tokenizer()
    return Engine(tiny_model(tok), tok, name="tiny-char", max_queue=2, max_tokens_limit=40)


@pytest.fixture
def client(engine: Engine) -> TestClient:
    return TestClient(create_app(engine))


def reference(engine: Engine, prompt_ids: list[int], n: int, **sampling) -> list[int]:
    return generate(engine.model, prompt_ids, n, sampling=SamplingConfig(top_k=None, **sampling),
                    eot_id=engine.tokenizer.eot_id)


def chunks(response) -> list[dict]:
    lines = [line for line in response.text.split("\n\n") if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line[6:]) for line in lines[:-1]]


def test_completion_returns_generates_tokens_greedy_and_seeded(engine: Engine, client: TestClient) -> None:
    prompt = engine.tokenizer.encode("ROMEO:")
    for sampling in (dict(temperature=0), dict(temperature=1.0, seed=7), dict(temperature=0.9, top_p=0.8, seed=3)):
        want = reference(engine, prompt, 20, **sampling)
        body = client.post("/v1/completions", json={"prompt": "ROMEO:", "max_tokens": 20, **sampling}).json()
        choice = body["choices"][0]
        assert choice["token_ids"] == want and choice["text"] == engine.tokenizer.decode(want)
        assert choice["prompt_token_ids"] == prompt and choice["finish_reason"] == "length"
        n = len(prompt)
        assert body["usage"] == {"prompt_tokens": n, "completion_tokens": 20, "total_tokens": n + 20}


def test_streamed_completion_is_the_same_text_in_chunks(engine: Engine, client: TestClient) -> None:
    want = reference(engine, engine.tokenizer.encode("KING:"), 15, temperature=1.0, seed=1)
    got = chunks(client.post("/v1/completions", json={"prompt": "KING:", "max_tokens": 15, "stream": True,
                                                       "temperature": 1.0, "seed": 1}))
    assert len(got) > 2 and all(c["object"] == "text_completion" for c in got)
    assert "".join(c["choices"][0]["text"] for c in got) == engine.tokenizer.decode(want)
    assert sum((c["choices"][0]["token_ids"] for c in got), []) == want
    assert got[-1]["choices"][0]["finish_reason"] == "length" and got[-1]["usage"]["completion_tokens"] == 15


def test_stop_strings_cut_the_text(engine: Engine, client: TestClient) -> None:
    full = client.post("/v1/completions", json={"prompt": "A", "max_tokens": 30, "temperature": 0}).json()
    text = full["choices"][0]["text"]
    stop = text[5:7]
    cut = client.post("/v1/completions", json={"prompt": "A", "max_tokens": 30, "temperature": 0, "stop": [stop]})
    choice = cut.json()["choices"][0]
    assert choice["text"] == text[: text.index(stop)] and choice["finish_reason"] == "stop"


def test_chat_plain_rendering_streams_role_then_content(engine: Engine, client: TestClient) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who are you?"}]
    prompt, stop_ids, stop_strings = render_chat(engine.tokenizer, messages)
    assert engine.tokenizer.decode(prompt) == "System: Be brief.\nUser: Who are you?\nAssistant:"
    body = client.post("/v1/chat/completions", json={"messages": messages, "max_tokens": 12, "temperature": 0})
    message = body.json()["choices"][0]["message"]
    want = reference(engine, prompt, 12, temperature=0)
    assert message["role"] == "assistant" and engine.tokenizer.decode(want).startswith(message["content"])
    got = chunks(client.post("/v1/chat/completions", json={"messages": messages, "max_tokens": 12,
                                                            "temperature": 0, "stream": True}))
    assert got[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in got) == message["content"]
    assert got[-1]["object"] == "chat.completion.chunk" and got[-1]["choices"][0]["finish_reason"]


def model_logprobs(engine: Engine, prompt: list[int], new: list[int]) -> torch.Tensor:
    """Log-softmax of one uncached forward over prompt + new tokens, at the positions that predicted ``new``."""
    with torch.no_grad():
        logits, _ = engine.model(torch.tensor([prompt + new]))
    return torch.log_softmax(logits[0, len(prompt) - 1 : -1].float(), dim=-1)


@pytest.mark.parametrize("sampling", [dict(temperature=0), dict(temperature=1.3, top_k=5, seed=2)])
def test_completion_logprobs_are_the_models_streamed_or_not(engine: Engine, client: TestClient, sampling) -> None:
    prompt = engine.tokenizer.encode("ROMEO:")
    request = {"prompt": "ROMEO:", "max_tokens": 12, "logprobs": 3, **sampling}
    choice = client.post("/v1/completions", json=request).json()["choices"][0]
    ids, lp = choice["token_ids"], choice["logprobs"]
    want = model_logprobs(engine, prompt, ids)  # raw model numbers, whatever the sampling settings
    assert lp["tokens"] == [engine.tokenizer.decode([t]) for t in ids]
    assert lp["token_logprobs"] == pytest.approx([want[i, t].item() for i, t in enumerate(ids)], abs=1e-4)
    assert lp["text_offset"] == list(range(len(ids)))  # one character per token
    for i, top in enumerate(lp["top_logprobs"]):
        best = want[i].topk(3)
        expected = {engine.tokenizer.decode([int(t)]): v.item() for v, t in zip(best.values, best.indices)}
        assert top.keys() == expected.keys() | {lp["tokens"][i]}
        assert [top[k] for k in expected] == pytest.approx(list(expected.values()), abs=1e-4)
    if sampling["temperature"] == 0:
        assert all(top[tok] == max(top.values()) for top, tok in zip(lp["top_logprobs"], lp["tokens"]))
    streamed = chunks(client.post("/v1/completions", json={**request, "stream": True}))
    joined = {k: sum((c["choices"][0]["logprobs"][k] for c in streamed[:-1]), []) for k in lp}
    assert joined == lp and streamed[-1]["choices"][0]["logprobs"] is None


def test_chat_logprobs_in_openais_chat_shape(engine: Engine, client: TestClient) -> None:
    messages = [{"role": "user", "content": "Who are you?"}]
    request = {"messages": messages, "max_tokens": 8, "temperature": 0, "logprobs": True, "top_logprobs": 2}
    choice = client.post("/v1/chat/completions", json=request).json()["choices"][0]
    content = choice["logprobs"]["content"]
    ids = choice["token_ids"]
    want = model_logprobs(engine, render_chat(engine.tokenizer, messages)[0], ids)
    assert [c["token"] for c in content] == [engine.tokenizer.decode([t]) for t in ids]
    assert [c["bytes"] for c in content] == [list(engine.tokenizer.token_bytes(t)) for t in ids]
    assert [c["logprob"] for c in content] == pytest.approx([want[i, t].item() for i, t in enumerate(ids)], abs=1e-4)
    assert all(len(c["top_logprobs"]) == 2 and c["top_logprobs"][0]["token"] == c["token"] for c in content)
    streamed = chunks(client.post("/v1/chat/completions", json={**request, "stream": True}))
    assert sum((c["choices"][0]["logprobs"]["content"] for c in streamed[1:-1]), []) == content
    plain = client.post("/v1/chat/completions", json={"messages": messages, "max_tokens": 2}).json()
    assert plain["choices"][0]["logprobs"] is None


@pytest.mark.parametrize("path, payload, param", [
    ("/v1/completions", {"prompt": "A", "logprobs": 21}, "logprobs"),
    ("/v1/completions", {"prompt": "A", "logprobs": True}, "logprobs"),
    ("/v1/completions", {"prompt": "A", "logprobs": -1}, "logprobs"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}, "top_logprobs"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "logprobs": True,
                              "top_logprobs": 99}, "top_logprobs"),
])
def test_bad_logprobs_requests_get_400(client: TestClient, path, payload, param) -> None:
    response = client.post(path, json=payload)
    assert response.status_code == 400 and response.json()["error"]["param"] == param, response.text


def test_chatml_tokenizer_renders_special_tokens_and_stops_at_end_of_turn() -> None:
    tok = tiny_tokenizer()
    ids = tok.add_special_tokens([IM_START, IM_END])
    prompt, stop_ids, stop_strings = render_chat(tok, [{"role": "user", "content": "hi"}])
    assert prompt.count(ids[IM_END]) == 1 and prompt.count(ids[IM_START]) == 2 and stop_ids == [ids[IM_END]]
    assert tok.decode(prompt) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n" and not stop_strings


@pytest.mark.parametrize("payload, status, param", [
    (b"{not json", 400, None),
    ({"prompt": "A", "max_tokens": -1}, 400, None),
    ({"prompt": "A", "max_tokens": 10_000}, 400, None),
    ({"prompt": "A", "temperature": -1}, 400, "temperature"),
    ({"prompt": "A", "n": 2}, 400, "n"),
    ({"prompt": "A", "stop": [""]}, 400, "stop"),
    ({"max_tokens": 3}, 400, "prompt"),
    ({"prompt": [3, 999]}, 400, None),
    ({"prompt": ["two", "prompts"]}, 400, "prompt"),
    ({"prompt": "A" * 1_000_000}, 413, None),
])
def test_bad_requests_get_openai_shaped_4xx(client: TestClient, payload, status, param) -> None:
    if isinstance(payload, bytes):
        response = client.post("/v1/completions", content=payload, headers={"Content-Type": "application/json"})
    else:
        response = client.post("/v1/completions", json=payload)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if param:
        assert error["param"] == param
    assert client.get("/health").json()["status"] == "ok"  # and the server carries on


def test_prompt_limit_and_bad_chat(engine: Engine, client: TestClient) -> None:
    engine.max_prompt_tokens = 8
    long = client.post("/v1/completions", json={"prompt": "ABCDEFGHIJ"}).json()
    assert "at most 8" in long["error"]["message"]
    bad = client.post("/v1/chat/completions", json={"messages": [{"role": "robot", "content": "x"}]})
    assert bad.status_code == 400 and "role" in bad.json()["error"]["message"]


def test_a_full_queue_answers_429(engine: Engine, client: TestClient) -> None:
    engine.admit(), engine.admit()  # two jobs admitted and not finished: the queue (max 2) is full
    response = client.post("/v1/completions", json={"prompt": "A"})
    assert response.status_code == 429 and response.json()["error"]["type"] == "server_busy"
    with pytest.raises(Busy):
        engine.admit()


def test_a_cancelled_job_stops_within_a_token_and_frees_its_slot(engine: Engine) -> None:
    job = Job(engine.tokenizer.encode("A"), 40, SamplingConfig(temperature=0))
    events = []

    def emit(event):
        events.append(event)
        job.cancelled.set()  # the client went away after the first piece

    engine.admit()
    engine.run(job, emit)
    assert len(events) == 1 and events[0][0] == "text" and engine.pending == 0
    assert engine._model_lock.acquire(blocking=False)  # the model is free again


def test_requests_are_serialised(engine: Engine) -> None:
    """Two threads at once get exactly what each would get alone (the lock keeps decodes apart)."""
    outputs: dict[int, list[int]] = {}

    def run(seed: int) -> None:
        job = Job(engine.tokenizer.encode("A"), 30, SamplingConfig(temperature=1.0, top_k=None, seed=seed))
        ids: list[int] = []
        engine.admit()
        engine.run(job, lambda e: ids.extend(e[2]) if e[0] == "text" else None)
        outputs[seed] = ids

    threads = [threading.Thread(target=run, args=(s,)) for s in (1, 2)]
    [t.start() for t in threads], [t.join() for t in threads]
    for seed in (1, 2):
        assert outputs[seed] == reference(engine, engine.tokenizer.encode("A"), 30, temperature=1.0, seed=seed)


def test_inspect_endpoint_and_page(engine: Engine, client: TestClient) -> None:
    ids = engine.tokenizer.encode("ROMEO: hi")
    body = client.post("/api/inspect", json={"ids": ids}).json()
    assert [t["id"] for t in body["tokens"]] == ids and body["tokens"][0]["p"] is None
    assert len(body["attention"]) == 2 and len(body["attention"][0]) == 4
    assert all(abs(sum(row) - 1) < 1e-3 for row in body["attention"][1][3])
    assert len(body["tokens"][3]["top"]) == 5
    assert client.post("/api/inspect", json={"ids": []}).status_code == 400
    page = client.get("/")
    assert page.status_code == 200 and "/v1/completions" in page.text and "/api/inspect" in page.text
    assert client.get("/v1/models").json()["data"][0]["id"] == "tiny-char"


def test_an_error_while_generating_is_reported_not_raised(engine: Engine, client: TestClient, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("the decode loop broke")

    monkeypatch.setattr("scratchllm.serving.engine.stream", broken)
    plain = client.post("/v1/completions", json={"prompt": "A"})
    assert plain.status_code == 500 and plain.json()["error"] == {
        "message": "the decode loop broke", "type": "server_error", "param": None, "code": None}
    streamed = client.post("/v1/completions", json={"prompt": "A", "stream": True})
    assert streamed.status_code == 200 and '"the decode loop broke"' in streamed.text
    assert engine.pending == 0 and client.get("/health").json()["status"] == "ok"


def test_leaving_a_stream_cancels_its_job(engine: Engine) -> None:
    """What the HTTP side does when a client goes: closing the event stream stops the decode loop early."""
    import asyncio

    from scratchllm.serving.api import _events, _start

    async def leave_after_first_piece() -> tuple[Job, asyncio.Queue]:
        job = Job(engine.tokenizer.encode("A"), 2000, SamplingConfig(temperature=0))
        engine.admit()
        queue = _start(engine, job)
        events = _events(queue, job)
        assert (await events.__anext__())[0] == "text"
        await events.aclose()
        for _ in range(500):
            if engine.pending == 0:
                break
            await asyncio.sleep(0.01)
        return job, queue

    job, queue = asyncio.run(leave_after_first_piece())
    assert job.cancelled.is_set() and engine.pending == 0
    assert queue.qsize() < 1000  # stopped long before its 2,000 tokens (no "done" was ever sent)
    assert all(event[0] == "text" for event in list(queue._queue))
