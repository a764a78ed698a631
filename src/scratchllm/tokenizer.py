"""``python -m scratchllm.tokenizer {train,show} ...``: train a BPE on your text, or look at how text is cut.

Examples::

    # a 32k byte-level BPE (GPT-4 split pattern) on your files; saved in tiktoken's format
    python -m scratchllm.tokenizer train input=data/my_corpus/ output=tokenizers/my-32k vocab_size=32768
    python -m scratchllm.tokenizer train input='books/**/*.txt' output=tok vocab_size=8192 \\
        special_tokens='[<|endoftext|>,<|user|>,<|assistant|>]' max_chars=1000000000

    # every token with its id and bytes, the count and characters per token
    python -m scratchllm.tokenizer show "The quick brown fox"                    # gpt2
    python -m scratchllm.tokenizer show "The quick brown fox" tokenizer=tokenizers/my-32k
    python -m scratchllm.tokenizer show file=notes.md tokenizer=cl100k color=never

Options are ``key=value`` like the other entry points' overrides (lists as ``[a,b]``). The trained folder is
then used with ``tokenizer=bpe tokenizer.path=<folder>`` in training and data preparation.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

from scratchllm.cli import report_user_errors
from scratchllm.errors import ConfigError, DataError

USAGE = """usage:
  python -m scratchllm.tokenizer train input=<file|folder|glob or [a,b]> output=<folder> [vocab_size=32768]
         [special_tokens=[<|endoftext|>,...]] [name=<label>] [text_field=text] [max_chars=0] [pattern=<regex>]
  python -m scratchllm.tokenizer show "<text>" [tokenizer=gpt2|char|cl100k|<folder or tokenizer.json or .ckpt>]
         [file=<path, or - for stdin>] [color=auto|always|never]"""


@dataclass
class TrainArgs:
    """``train``'s options (see ``train_bpe.py`` for what they do)."""

    input: Any = None  # str or list of str: files, folders, globs
    output: str | None = None
    vocab_size: int = 32768
    special_tokens: Any = field(default_factory=lambda: ["<|endoftext|>"])
    name: str | None = None  # label stored with the tokenizer (default: the output folder's name)
    text_field: str = "text"  # the field of .jsonl records
    max_chars: int = 0  # stop reading after this many characters (0: all)
    pattern: str | None = None  # split regex (default: GPT-4's)


def parse_overrides(argv: Sequence[str], allowed: Sequence[str], command: str,
                    raw: Sequence[str] = ()) -> dict[str, Any]:
    """``key=value`` arguments -> dict, values parsed as OmegaConf/Hydra does (``[a,b]`` lists, numbers); keys in
    ``raw`` keep their value as typed (a regex such as ``'(?i:...)|[^\\s]`` is no OmegaConf expression)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    bad = [a for a in argv if "=" not in a]
    if bad:
        raise ConfigError(f"'{bad[0]}' is not key=value; {command} takes {', '.join(k + '=' for k in allowed)}")
    keys = [a.split("=", 1)[0] for a in argv]
    unknown = [k for k in keys if k not in allowed]
    if unknown:
        raise ConfigError(f"{command} has no option '{unknown[0]}'; choose from {list(allowed)}")
    plain = [a for a in argv if a.split("=", 1)[0] not in raw]
    try:
        parsed = OmegaConf.to_container(OmegaConf.from_dotlist(plain), resolve=True)
    except OmegaConfBaseException as e:
        raise ConfigError(f"cannot parse {command} options ({str(e).splitlines()[0]})") from e
    assert isinstance(parsed, dict)
    parsed.update(a.split("=", 1) for a in argv if a.split("=", 1)[0] in raw)
    return parsed


def train_command(argv: Sequence[str]) -> int:
    from scratchllm.tokenizers.bpe import GPT4_PATTERN, is_bpe_dir
    from scratchllm.tokenizers.train_bpe import BPETrainConfig, train_bpe_files

    raw = ("output", "name", "text_field", "pattern")
    args = TrainArgs(**parse_overrides(argv, [f.name for f in fields(TrainArgs)], "train", raw=raw))
    if args.input in (None, "", []):
        raise ConfigError("train needs input=<file, folder or glob> (several: input=[a.txt,b/])")
    if not args.output:
        raise ConfigError("train needs output=<folder> to save the tokenizer in")
    out = Path(str(args.output)).expanduser()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output={out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not is_bpe_dir(out):
        raise ConfigError(f"output={out} is a non-empty folder that holds no trained tokenizer; pick a new folder")
    inputs = [str(i) for i in args.input] if isinstance(args.input, list) else str(args.input)
    config = BPETrainConfig(
        vocab_size=args.vocab_size,
        special_tokens=args.special_tokens,
        pattern=args.pattern or GPT4_PATTERN,
        name=args.name or out.resolve().name,
    )
    print(f"training a {config.vocab_size:,}-token BPE on {inputs} ...", flush=True)
    result = train_bpe_files(inputs, out, config, text_field=args.text_field, max_chars=args.max_chars)
    s, tok = result.summary, result.tokenizer
    mb = s["bytes"] / 1e6
    print(f"read {s['files']} file(s), {s['documents']:,} document(s), {mb:,.1f} MB in {result.seconds:.1f} s "
          f"({mb / max(result.seconds, 1e-9):,.1f} MB/s)")
    if s["replaced_chars"]:
        print(f"note: {s['replaced_chars']:,} character(s) were not valid UTF-8 and became U+FFFD")
    if s["skipped_jsonl_lines"]:
        print(f"note: {s['skipped_jsonl_lines']:,} jsonl line(s) had no string '{args.text_field}' field: skipped")
    specials = ", ".join(f"{k}={v}" for k, v in tok.special_tokens.items())
    print(f"vocab {tok.vocab_size:,} = 256 bytes + {s['merges']:,} merges + {len(tok.special_tokens)} special "
          f"({specials})")
    if tok.vocab_size < config.vocab_size:
        print(f"note: the text ran out of pairs to merge; asked for {config.vocab_size:,} tokens "
              "(use more text or a smaller vocab_size)")
    print(f"saved {result.output}/vocab.tiktoken and {result.output}/bpe.json")
    print(f"use it: python -m scratchllm.train tokenizer=bpe tokenizer.path={result.output}")
    return 0


def _tokenizer_for_show(spec: str, text: str) -> tuple[Any, str]:
    from scratchllm.tokenizers import build_tokenizer

    if spec == "char":  # a char vocabulary is fitted on text: here, the text being shown
        return build_tokenizer("char", train_text=text or " "), "char (fitted on this text)"
    if spec.endswith(".ckpt"):
        return _tokenizer_from_checkpoint(spec), f"the tokenizer of {spec}"
    tok = build_tokenizer(spec)
    label = getattr(tok, "label", None)
    return tok, f"{tok.name} '{label}'" if label else tok.name


def _tokenizer_from_checkpoint(path: str) -> Any:
    from scratchllm import checkpoint
    from scratchllm.tokenizers import tokenizer_from_dict

    return tokenizer_from_dict(checkpoint.stored_tokenizer(Path(path).expanduser()))


def show_command(argv: Sequence[str]) -> int:
    from scratchllm.tokenizers.show import format_tokens, use_color

    option_keys = ("tokenizer", "file", "color")
    options = [a for a in argv if a.split("=", 1)[0] in option_keys and "=" in a]
    words = [a for a in argv if a not in options]
    opts = parse_overrides(options, option_keys, "show", raw=option_keys)
    if "file" in opts:
        if words:
            raise ConfigError("give the text either as an argument or as file=, not both")
        text = _read_text(opts["file"])
    else:
        if not words:
            raise ConfigError('show needs a text: python -m scratchllm.tokenizer show "The quick brown fox"')
        text = " ".join(words)
    tok, label = _tokenizer_for_show(opts.get("tokenizer", "gpt2"), text)
    color = use_color(opts.get("color", "auto"), sys.stdout)
    print(format_tokens(tok, text, color=color, label=label))
    return 0


def _read_text(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"file={p} does not exist")
    return p.read_bytes().decode("utf-8", errors="replace")


COMMANDS = {"train": train_command, "show": show_command}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__.strip() + "\n\n" + USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command '{command}'; choose one of {sorted(COMMANDS)}\n{USAGE}", file=sys.stderr)
        return 2
    with report_user_errors():
        return COMMANDS[command](rest)


if __name__ == "__main__":
    raise SystemExit(main())
