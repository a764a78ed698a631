"""What ``python -m scratchllm.serve`` does once Hydra has composed its config: check it, load the model once,
run uvicorn on one event loop (one process: the model is in memory once)."""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass
from typing import Any

from scratchllm.errors import ConfigError, InputError
from scratchllm.generation.loading import LoadOptions
from scratchllm.threads import apply_threads


@dataclass
class ServeOptions(LoadOptions):
    """The fields of conf/serve.yaml (see there for what each one does); the loading ones are ``LoadOptions``'."""

    host: str = "127.0.0.1"
    port: int = 8000
    name: str | None = None
    max_queue: int = 8
    max_tokens: int = 512
    max_prompt_tokens: int | None = None

    def __post_init__(self) -> None:
        for key in ("port", "max_queue", "max_tokens"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key == "port" else 1):
                raise ConfigError(f"{key} must be a positive integer, got {value!r}")
        if self.port > 65535:
            raise ConfigError(f"port must be at most 65535, got {self.port}")
        if self.max_prompt_tokens is not None and (not isinstance(self.max_prompt_tokens, int)
                                                   or self.max_prompt_tokens < 1):
            raise ConfigError(f"max_prompt_tokens must be a positive integer or null, got {self.max_prompt_tokens!r}")
        super().__post_init__()


def build_engine(options: ServeOptions) -> Any:
    from scratchllm.serving.engine import Engine

    apply_threads(options.threads)
    model, tokenizer = options.load()
    if tokenizer is None:
        raise InputError("this checkpoint names no tokenizer, and the server speaks text: pass tokenizer=<name> or "
                         "tokenizer.path=<tokenizer.json or folder>")
    return Engine(model, tokenizer, name=options.name or model.config.name, max_queue=options.max_queue,
                  max_prompt_tokens=options.max_prompt_tokens, max_tokens_limit=options.max_tokens)


def _check_port(host: str, port: int) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a TIME_WAIT port is free
        try:
            probe.bind((host, port))
        except OSError as err:
            raise ConfigError(f"cannot listen on {host}:{port} ({err.strerror}); pass port=<another> or stop what "
                              f"uses it") from None


def serve(options: ServeOptions) -> None:
    import uvicorn

    from scratchllm.serving.api import create_app

    _check_port(options.host, options.port)  # before the (slow) load, not after it
    print(f"loading {options.ckpt_path} …", file=sys.stderr, flush=True)
    engine = build_engine(options)
    cfg = engine.model.config
    quantized = f", weights {options.quantize}" if options.quantize not in (None, "", "none") else ""
    print(f"loaded {engine.name} ({cfg.n_layer} layers, context {cfg.context_length}{quantized}, tokenizer "
          f"{engine.tokenizer.name}); playground http://{options.host}:{options.port}/ , OpenAI base_url "
          f"http://{options.host}:{options.port}/v1", file=sys.stderr, flush=True)
    uvicorn.run(create_app(engine), host=options.host, port=options.port, log_level="warning")
