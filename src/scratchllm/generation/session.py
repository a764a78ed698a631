"""What ``python -m scratchllm.generate`` does once Hydra has composed its config: load once, then stream text.

``GenerateOptions`` is the config as a checked dataclass (every value validated before the model is loaded, so a
typo costs no loading time); the yaml's flat sampling keys (``temperature=0.7 top_k=50``) become its ``sampling``,
a ``SamplingConfig`` whose defaults the yaml repeats. ``run_session`` loads the checkpoint and answers one prompt,
or, with ``interactive``, every line of stdin until EOF with the model kept in memory. Each answer is its prompt (with
``echo_prompt``) and continuation; in interactive mode a blank line follows each one, so a file of prompts gives
one readable block per prompt, and a prompt that cannot be encoded is reported on stderr and skipped.

Tokenizer: ``tokenizer`` is the config's node (``tokenizer=<group option>`` and/or ``tokenizer.path=<file>``, see
``loading.tokenizer_override``) except ``tokenizer.unknown``, which is the policy for prompt characters outside a
char vocabulary (``text.check_prompt_characters``), not part of the vocabulary: that always comes from a file.

Escapes: a shell and Hydra pass ``\\n`` through as a backslash and an ``n``, yet a newline is the most common
stop string and prompt ending, so ``prompt`` and ``stop`` read ``\\n``, ``\\t``, ``\\r`` and ``\\\\`` (a literal
backslash) as escapes. Any other backslash is kept as typed. Lines read in interactive mode are taken as they are.

Streams: the generated text goes to stdout, flushed piece by piece so it appears as it is produced; the
tokens/s line and notes go to stderr, so ``> out.txt`` captures only the text.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Mapping, TextIO

import torch

from scratchllm.errors import ConfigError, InputError
from scratchllm.generation.fastpath import decode_session
from scratchllm.generation.loading import LoadOptions
from scratchllm.generation.sampling import SamplingConfig
from scratchllm.generation.text import TextStream, check_prompt_characters, encode_prompt, format_ids
from scratchllm.threads import apply_threads
from scratchllm.tokenizers.char import UNKNOWN_CHOICES


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


def unescape(text: str) -> str:
    """``\\n``, ``\\t``, ``\\r`` and ``\\\\`` as the characters they name; any other backslash stays."""
    return re.sub(r"\\([ntr\\])", lambda m: _ESCAPES[m.group(1)], text)


@dataclass
class GenerateOptions(LoadOptions):
    """The fields of conf/generate.yaml (see there for what each one does); its sampling keys are ``sampling``;
    the loading ones are ``LoadOptions``'."""

    prompt: str = ""
    max_new_tokens: int = 200
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    stop: list[str] = field(default_factory=list)
    interactive: bool = False
    echo_prompt: bool = True
    chat: bool = False  # render prompts with the chat template, stop at the end of the assistant's turn
    system_prompt: str | None = None  # chat: the system message that opens the conversation

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        self.stop = [unescape(str(s)) for s in (self.stop or [])]
        self.prompt = "" if self.prompt is None else unescape(str(self.prompt))
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 0:
            raise ConfigError(f"max_new_tokens must be an integer >= 0, got {self.max_new_tokens!r}")
        if not isinstance(self.sampling, SamplingConfig):
            raise ConfigError(f"sampling must be a SamplingConfig, got {type(self.sampling).__name__}")
        if self.unknown not in (None, *UNKNOWN_CHOICES):
            raise ConfigError(f"tokenizer.unknown={self.unknown!r} is not known; choose one of: "
                              f"{', '.join(UNKNOWN_CHOICES)}")
        super().__post_init__()

    @property
    def unknown(self) -> str | None:
        """The policy for prompt characters outside a char vocabulary (None: the tokenizer's own)."""
        return self.tokenizer.get("unknown") if isinstance(self.tokenizer, Mapping) else None

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "GenerateOptions":
        """The composed config, flat as the yaml has it: the sampling keys go to ``sampling``, the rest here."""
        known = {f.name for f in dataclasses.fields(cls)} - {"sampling"}
        options = {k: v for k, v in values.items() if k in known}
        return cls(sampling=SamplingConfig.from_mapping(values), **options)


def run_session(
    options: GenerateOptions,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> None:
    """Load the checkpoint once, then answer ``options.prompt`` or, interactively, each line of ``stdin``."""
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    threads = apply_threads(options.threads)
    model, tokenizer = options.load()
    device, dtype = next(model.parameters()).device, next(model.parameters()).dtype
    name = tokenizer.name if tokenizer is not None else "none: prompts and output are token ids"
    print(f"loaded {model.config.name} ({model.config.vocab_size} ids) on {device} in {str(dtype).split('.')[-1]}; "
          f"tokenizer {name}; {torch.get_num_threads()} threads ({threads.reason})", file=stderr, flush=True)
    if options.chat:
        _chat(model, tokenizer, options, stdin, stdout, stderr)
        return
    if not options.interactive:
        _answer(model, tokenizer, options.prompt, options, stdout, stderr)
        return
    interactive_tty = hasattr(stdin, "isatty") and stdin.isatty()
    with decode_session(model):  # bf16: pack the weights for the first prompt, reuse them for every later one
        while True:
            if interactive_tty:
                print("> ", end="", file=stderr, flush=True)
            line = stdin.readline()
            if not line:  # EOF
                break
            try:
                _answer(model, tokenizer, line.rstrip("\r\n"), options, stdout, stderr)
            except InputError as err:  # one bad prompt must not end the session (and unload the model)
                print(f"error: {err}", file=stderr, flush=True)
                continue
            stdout.write("\n")  # answers hold newlines of their own: a blank line marks where one ends
            stdout.flush()


def _chat(model: torch.nn.Module, tokenizer: Any, options: GenerateOptions, stdin: TextIO, stdout: TextIO,
          stderr: TextIO) -> None:
    """``chat=true``: each prompt (or each line of stdin) is a user turn; the reply ends at ``<|im_end|>``, and in
    interactive mode the conversation so far is the context of the next turn."""
    from scratchllm.finetune.chat import IM_END, ChatTemplate

    template = ChatTemplate(tokenizer)  # a one-line error when the model was never chat-tuned
    history = [{"role": "system", "content": options.system_prompt}] if options.system_prompt else []
    lines = iter(lambda: stdin.readline(), "") if options.interactive else iter([options.prompt])
    tty = options.interactive and hasattr(stdin, "isatty") and stdin.isatty()
    with decode_session(model):
        while True:
            if tty:
                print("> ", end="", file=stderr, flush=True)
            line = next(lines, None)
            if line is None:
                break
            history.append({"role": "user", "content": line.rstrip("\r\n")})
            text = TextStream(model, tokenizer, template.prompt_ids(history), options.max_new_tokens,
                              stop=[IM_END, *options.stop], sampling=options.sampling)
            reply = []
            for piece in text:
                reply.append(piece)
                stdout.write(piece)
                stdout.flush()
            stdout.write("\n")
            stdout.flush()
            history.append({"role": "assistant", "content": "".join(reply)})
            print(text.stats.summary(), file=stderr, flush=True)


def _answer(
    model: torch.nn.Module,
    tokenizer: Any,
    prompt: str,
    options: GenerateOptions,
    stdout: TextIO,
    stderr: TextIO,
) -> None:
    note = check_prompt_characters(tokenizer, prompt, options.unknown)
    if note:
        print(note, file=stderr, flush=True)
    prompt_ids = encode_prompt(tokenizer, prompt)
    text = TextStream(model, tokenizer, prompt_ids, options.max_new_tokens, stop=options.stop,
                      sampling=options.sampling)
    if options.echo_prompt and prompt:
        stdout.write(prompt if tokenizer is not None else format_ids(prompt_ids))
        stdout.flush()
    for piece in text:
        stdout.write(piece)
        stdout.flush()
    stdout.write("\n")
    stdout.flush()
    print(text.stats.summary(), file=stderr, flush=True)

