"""README.md's fenced command blocks as runnable commands, and the tiny sizes a test adds to them.

A ```bash block is one command per line (a trailing `\\` joins the next line; a trailing `# comment` is dropped);
a ```python block is one program. Nothing else is changed: ``shrink`` only sets step counts and sizes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^```(\w*)\s*$")

# What makes a run quick without changing what the command does: two optimizer steps, one small validation
# batch, a short sample. The batch is shrunk too: one 64×256 batch of the micro recipes takes ~20 s on 2 cores.
TRAIN_TINY = {
    "trainer.max_steps": "2",
    "trainer.val_check_interval": "2",
    "data.max_val_windows": "2",
    "data.batch_size": "2",
    "sample.max_new_tokens": "8",
}
GENERATE_TINY = {"max_new_tokens": "8"}
EVALUATE_TINY = {"limit": "4"}


@dataclass(frozen=True)
class Command:
    line: int  # README line the command starts on (1-based)
    lang: str  # "bash" or "python"
    text: str  # as the README writes it: continuations joined, trailing comment dropped

    @property
    def id(self) -> str:
        """A readable test id: the line and the command's first words, without `.venv/bin/python -m scratchllm.`."""
        words = self.text.replace("bash scripts/setup.sh && ", "").replace(".venv/bin/python -m scratchllm.", "")
        words = words.replace(".venv/bin/", "").split()
        if self.lang == "python":  # the first scratchllm module it imports
            words = ["python", *re.findall(r"from (scratchllm\S*) import", self.text)[:1]]
        head = re.sub(r"[^A-Za-z0-9_.=/,<>-]+", "", "_".join(words[:3]))
        return f"L{self.line}-{head[:56]}"


def strip_comment(line: str) -> str:
    """``line`` without a trailing shell comment: a `#` at a word start, outside quotes."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def readme_commands(path: Path) -> list[Command]:
    """Every command of README.md's ```bash blocks and every ```python block, in README order."""
    commands: list[Command] = []
    lang = None  # inside a fence: its language ("" for a plain block)
    block: list[tuple[int, str]] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fence = FENCE.match(raw)
        if fence and lang is None:
            lang, block = fence.group(1), []
            continue
        if fence and lang is not None and not fence.group(1):
            commands += _block_commands(lang, block)
            lang = None
            continue
        if lang is not None:
            block.append((number, raw))
    return commands


def _block_commands(lang: str, block: list[tuple[int, str]]) -> list[Command]:
    if lang == "python" and block:
        return [Command(block[0][0], "python", "\n".join(text for _, text in block) + "\n")]
    if lang != "bash":
        return []
    commands, start, parts = [], 0, []
    for number, raw in block:
        line = strip_comment(raw)
        if not parts:
            start = number
        if line.endswith("\\"):
            parts.append(line[:-1].strip())
            continue
        parts.append(line.strip())
        text = " ".join(p for p in parts if p)
        if text:
            commands.append(Command(start, "bash", text))
        parts = []
    return commands


def shrink(text: str) -> str:
    """``text`` with tiny step counts and sizes for the entry points that train or generate. A key the command
    already sets gets the tiny value in place (no duplicate override); others go after the command's last
    argument (before a `< file` redirect)."""
    if "scratchllm.train" in text:
        tiny = TRAIN_TINY
    elif "scratchllm.generate" in text:
        tiny = GENERATE_TINY
    elif "scratchllm.evaluate" in text:
        tiny = EVALUATE_TINY
    else:
        return text
    command, redirect = (text.split(" < ", 1) + [""])[:2]
    extra = []
    for key, value in tiny.items():
        pattern = re.compile(rf"(?<=\s){re.escape(key)}=\S+")
        if pattern.search(command):
            command = pattern.sub(f"{key}={value}", command)
        else:
            extra.append(f"{key}={value}")
    command = " ".join([command, *extra])
    return f"{command} < {redirect}" if redirect else command
