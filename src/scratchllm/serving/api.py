"""The HTTP face of an ``Engine``: OpenAI's ``/v1/models``, ``/v1/completions``, ``/v1/chat/completions`` (SSE
streaming or one JSON body), ``/health``, the playground page at ``/`` and ``/api/inspect`` for its views.

Request fields map onto ``SamplingConfig``: ``temperature`` (OpenAI's default 1; 0 = greedy), ``top_p``,
``seed``, ``max_tokens`` (OpenAI's 16 for completions; the server's ``max_tokens_limit`` for chat), ``stop``
(strings). Our other filters travel as extra body fields (``top_k``, ``min_p``, ``repetition_penalty``; the
``openai`` client sends them with ``extra_body=``). Settings we cannot honour (``n`` > 1, presence/frequency
penalties, ``echo``) get a 400 rather than being silently ignored.

Log-probabilities (``engine.py`` says which numbers they are), in OpenAI's two shapes, streamed and not:
completions take ``logprobs: <0..20>`` (how many alternatives) and answer ``{"tokens", "token_logprobs",
"top_logprobs": [{text: logprob}], "text_offset"}`` per choice (offsets count from the start of the completion; a
``top_logprobs`` entry also holds the sampled token, so it may have one more key); chat takes ``logprobs: true``
and ``top_logprobs: <0..20>`` and answers ``{"content": [{"token", "logprob", "bytes", "top_logprobs"}]}``. A
token's text is its bytes decoded leniently (a piece of a multi-byte character shows as U+FFFD; ``bytes`` has the
exact ones). Every error, a malformed
body included, is OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.

Each choice also carries ``token_ids`` (extension fields clients ignore): the ids behind its text, and with the last
chunk ``prompt_token_ids``, so the page inspects exactly the tokens that were read and generated rather than a
re-encoding of the text.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from importlib import resources
from typing import Any, AsyncIterator, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from scratchllm.errors import ScratchLLMError
from scratchllm.generation.sampling import SamplingConfig
from scratchllm.generation.text import encode_prompt
from scratchllm.serving.chat import is_chatml, render_chat
from scratchllm.serving.engine import Busy, Engine, Job, TokenLogprob

MAX_BODY_BYTES = 256 * 1024  # a prompt longer than this is refused before it is parsed
MAX_LOGPROBS = 20  # alternatives per token (OpenAI's chat limit)


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="ignore")  # e.g. `user`, `logit_bias` absent: OpenAI clients send extras
    model: str | None = None
    max_tokens: int | None = None
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int | None = Field(None, ge=1)
    min_p: float | None = Field(None, ge=0, le=1)
    repetition_penalty: float | None = Field(None, gt=0)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    n: int = 1
    echo: bool = False
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0


class CompletionRequest(_Sampling):
    prompt: str | list[int]
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS, strict=True)


class Message(BaseModel):
    role: str
    content: str


class ChatRequest(_Sampling):
    messages: list[Message]
    logprobs: bool = Field(False, strict=True)
    top_logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS, strict=True)

    def wanted_logprobs(self) -> int | None:
        if self.top_logprobs is not None and not self.logprobs:
            raise APIError(400, "top_logprobs needs logprobs: true", param="top_logprobs")
        return (self.top_logprobs or 0) if self.logprobs else None


class APIError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param = status, message, kind, param


def _error(status: int, message: str, kind: str = "invalid_request_error", param: str | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": param, "code": None}}
    return JSONResponse(body, status_code=status)


def _sampling(req: _Sampling) -> SamplingConfig:
    unsupported = {"n": req.n != 1, "echo": req.echo,
                   "presence_penalty": req.presence_penalty != 0, "frequency_penalty": req.frequency_penalty != 0}
    for name, bad in unsupported.items():
        if bad:
            raise APIError(400, f"{name} is not supported by this server; leave it at its default "
                                f"(repetition_penalty is available as an extra field)", param=name)
    return SamplingConfig(temperature=req.temperature, top_p=None if req.top_p >= 1 else req.top_p, top_k=req.top_k,
                          min_p=req.min_p, repetition_penalty=req.repetition_penalty, seed=req.seed)


def _stops(stop: str | list[str] | None) -> list[str]:
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if len(stops) > 4 or not all(stops):
        raise APIError(400, "stop takes up to 4 non-empty strings", param="stop")
    return stops


def create_app(engine: Engine) -> FastAPI:
    app = FastAPI(title="scratchllm", docs_url=None, redoc_url=None)
    page = resources.files("scratchllm.serving").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.middleware("http")
    async def _limit_body(request: Request, call_next: Any) -> Any:
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > MAX_BODY_BYTES:
            return _error(413, f"the request body is {int(size):,} bytes; this server accepts at most "
                               f"{MAX_BODY_BYTES:,}")
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        if first.get("type") == "json_invalid":
            return _error(400, "the request body is not valid JSON")
        # param names the request field, as OpenAI's do; the message keeps the full path (messages.0.role)
        param = loc[0] if loc else None
        return _error(400, f"{'.'.join(loc) or 'body'}: {first.get('msg', 'invalid request')}", param=param)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.kind, exc.param)

    @app.exception_handler(ScratchLLMError)
    async def _user_error(request: Request, exc: ScratchLLMError) -> JSONResponse:
        return _error(400, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        return page

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": engine.name, "queued": engine.pending}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": engine.name, "object": "model", "created": engine.created,
                                            "owned_by": "scratchllm"}]}

    @app.get("/api/info")
    async def info() -> dict[str, Any]:
        cfg = engine.model.config
        return {"model": engine.name, "n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_kv_head": cfg.n_kv_head,
                "context_length": cfg.context_length, "chat_template": "chatml" if is_chatml(engine.tokenizer)
                else "plain", "max_tokens_limit": engine.max_tokens_limit}

    @app.post("/api/inspect")
    async def inspect_ids(request: Request) -> dict[str, Any]:
        body = await _json(request)
        ids = body.get("ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(t, int) for t in ids):
            raise APIError(400, "ids must be a non-empty list of token ids", param="ids")
        return await asyncio.to_thread(engine.inspect, ids)

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest) -> Any:
        prompt_ids = list(req.prompt) if isinstance(req.prompt, list) else encode_prompt(engine.tokenizer, req.prompt)
        job = Job(prompt_ids, 16 if req.max_tokens is None else req.max_tokens, _sampling(req),
                  stop_strings=_stops(req.stop), logprobs=req.logprobs)
        return await _respond(engine, job, req.stream, "text_completion", chat=False)

    @app.post("/v1/chat/completions")
    async def chat(req: ChatRequest) -> Any:
        prompt_ids, stop_ids, stop_strings = render_chat(engine.tokenizer, req.messages)
        max_tokens = engine.max_tokens_limit if req.max_tokens is None else req.max_tokens
        job = Job(prompt_ids, max_tokens, _sampling(req), stop_ids, stop_strings + _stops(req.stop),
                  logprobs=req.wanted_logprobs())
        return await _respond(engine, job, req.stream, "chat.completion", chat=True)

    return app


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise APIError(400, "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    return body


def _start(engine: Engine, job: Job) -> asyncio.Queue[tuple[Any, ...]]:
    """Hand an admitted job to a worker thread now (not when someone first reads it); its events land in a queue."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
    loop.run_in_executor(None, engine.run, job, lambda e: loop.call_soon_threadsafe(queue.put_nowait, e))
    return queue


async def _events(queue: asyncio.Queue[tuple[Any, ...]], job: Job) -> AsyncIterator[tuple[Any, ...]]:
    """The job's events as they happen; leaving early (a client gone) cancels the job and frees its slot."""
    try:
        while True:
            event = await queue.get()
            yield event
            if event[0] in ("done", "error"):
                return
    finally:
        job.cancelled.set()


async def _respond(engine: Engine, job: Job, stream: bool, kind: Literal["text_completion", "chat.completion"],
                   chat: bool) -> Any:
    engine.check(job)
    try:
        engine.admit()
    except Busy as err:
        raise APIError(429, str(err), kind="server_busy") from None
    ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    events = _events(_start(engine, job), job)

    def body(choice: dict[str, Any], obj: str, usage: dict[str, int] | None = None) -> dict[str, Any]:
        out = {"id": ident, "object": obj, "created": created, "model": engine.name, "choices": [choice]}
        if usage is not None:
            out["usage"] = usage
        return out

    shape = _LogprobShape(engine.tokenizer, chat) if job.logprobs is not None else None
    if not stream:
        text, ids, lps, finish, usage = [], [], [], "length", None
        try:
            async for event in events:
                if event[0] == "error":
                    return _error(event[2], event[1], kind="server_error" if event[2] >= 500 else
                                  "invalid_request_error")
                if event[0] == "text":
                    text.append(event[1])
                    ids += event[2]
                    lps += event[3] or []
                else:
                    finish, usage = event[1], event[2]
        finally:
            await events.aclose()  # also when this handler is cancelled (client gone): the job stops
        content = "".join(text)
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish, "token_ids": ids,
                                  "prompt_token_ids": job.prompt_ids}
        if chat:
            choice["message"] = {"role": "assistant", "content": content}
        else:
            choice["text"] = content
        choice["logprobs"] = shape.render(lps) if shape is not None else None
        return body(choice, kind, usage)

    async def sse() -> AsyncIterator[str]:
        obj = "chat.completion.chunk" if chat else "text_completion"
        if chat:  # OpenAI's first chunk names the role
            yield _sse(body({"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}, obj))
        try:
            async for event in events:
                if event[0] == "error":  # the status line has gone out already: the error travels as an event
                    kind = "server_error" if event[2] >= 500 else "invalid_request_error"
                    yield _sse({"error": {"message": event[1], "type": kind, "param": None, "code": None}})
                    return
                done = event[0] == "done"
                text = "" if done else event[1]
                choice: dict[str, Any] = {"index": 0, "finish_reason": event[1] if done else None,
                                          "token_ids": [] if done else event[2]}
                if done:
                    choice["prompt_token_ids"] = job.prompt_ids
                if chat:
                    choice["delta"] = {} if done else {"content": text}
                else:
                    choice["text"] = text
                choice["logprobs"] = shape.render(event[3] or []) if shape is not None and not done else None
                yield _sse(body(choice, obj, event[2] if done else None))
            yield "data: [DONE]\n\n"
        finally:
            await events.aclose()

    return StreamingResponse(sse(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


class _LogprobShape:
    """``TokenLogprob`` lists in OpenAI's completions or chat shape (module doc); completions' ``text_offset``
    runs on across the chunks of one stream."""

    def __init__(self, tokenizer: Any, chat: bool) -> None:
        self.tokenizer, self.chat, self.offset = tokenizer, chat, 0

    def _piece(self, token: int) -> tuple[str, bytes]:
        raw = self.tokenizer.token_bytes(token)
        return raw.decode("utf-8", errors="replace"), raw

    def render(self, lps: list[TokenLogprob]) -> dict[str, Any]:
        if self.chat:
            def entry(token: int, logprob: float) -> dict[str, Any]:
                text, raw = self._piece(token)
                return {"token": text, "logprob": logprob, "bytes": list(raw)}

            return {"content": [{**entry(lp.id, lp.logprob), "top_logprobs": [entry(t, v) for t, v in lp.top]}
                                for lp in lps], "refusal": None}
        tokens, offsets, tops = [], [], []
        for lp in lps:
            text = self._piece(lp.id)[0]
            tokens.append(text)
            offsets.append(self.offset)
            self.offset += len(text)
            top: dict[str, float] = {}
            for t, v in [*lp.top, (lp.id, lp.logprob)]:
                top.setdefault(self._piece(t)[0], v)  # two ids may print alike (U+FFFD): the likelier one stays
            tops.append(top)
        return {"tokens": tokens, "token_logprobs": [lp.logprob for lp in lps], "top_logprobs": tops,
                "text_offset": offsets}


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"
