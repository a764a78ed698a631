"""Instruction (Alpaca) and chat JSONL readers: files, folders, globs, and one-line errors naming the line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scratchllm.errors import DataError
from scratchllm.finetune.formats import read_conversations


def write(path: Path, *lines: object) -> Path:
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


def test_alpaca_and_chat_lines_become_conversations(tmp_path: Path) -> None:
    f = write(tmp_path / "mix.jsonl",
              {"instruction": "Name the play.", "input": "To be or not to be", "output": "Hamlet"},
              "",
              {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]})
    convs = read_conversations(f, system="Be brief.")
    assert convs[0] == [{"role": "system", "content": "Be brief."},
                        {"role": "user", "content": "Name the play.\n\nTo be or not to be"},
                        {"role": "assistant", "content": "Hamlet"}]
    assert convs[1][0]["role"] == "system" and convs[1][-1]["content"] == "hello"


def test_folders_and_globs_follow_the_textio_rule(tmp_path: Path) -> None:
    row = {"instruction": "a", "output": "b"}
    (tmp_path / "d").mkdir()
    write(tmp_path / "d" / "one.jsonl", row)
    write(tmp_path / "d" / "two.jsonl", row, row)
    (tmp_path / "d" / "notes.txt").write_text("ignored")
    assert len(read_conversations(tmp_path / "d")) == 3
    assert len(read_conversations(str(tmp_path / "d" / "t*.jsonl"))) == 2
    with pytest.raises(DataError, match="no input files match"):
        read_conversations(str(tmp_path / "nothing*.jsonl"))


@pytest.mark.parametrize("line, message", [
    ('{"instruction": "a", "output": ', r"bad.jsonl:2: not valid JSON"),
    ('{"instruction": "a"}', r"bad.jsonl:2: field 'output' must be a string"),
    ('{"text": "a"}', r"bad.jsonl:2: neither a 'messages' field"),
    ('{"messages": [{"role": "user", "content": "only a question"}]}', r"bad.jsonl:2: .*no assistant turn"),
    ('[1, 2]', r"bad.jsonl:2: each line must be a JSON object"),
])
def test_bad_lines_are_named(tmp_path: Path, line: str, message: str) -> None:
    f = write(tmp_path / "bad.jsonl", {"instruction": "a", "output": "b"}, line)
    with pytest.raises(DataError, match=message) as err:
        read_conversations(f)
    assert "\n" not in str(err.value)
