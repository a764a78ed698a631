"""Bad fine-tuning input, as a user meets it through ``python -m scratchllm.train``: exit 2 and one line that names
the file and line (or the field). The readers' own tests cover each message in detail (test_formats.py,
test_classify.py, test_lora.py for an adapter of another shape, test_sft.py for init_from)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.finetune.test_sft import run

CHAT = {"messages": [{"role": "user", "content": "Who?"}, {"role": "assistant", "content": "HAMLET"}]}
CASES = {
    "malformed_jsonl": (["experiment=sft_plays"], [json.dumps(CHAT), '{"messages": ['],
                        r"train.jsonl:2: not valid JSON"),
    "no_assistant_turn": (["experiment=sft_plays"],
                          [json.dumps(CHAT), json.dumps({"messages": [{"role": "user", "content": "Who?"}]})],
                          r"train.jsonl:2: .*no assistant turn"),
    "unknown_label": (["experiment=classify_plays", "data.labels=[comedy,tragedy]"],
                      [json.dumps({"text": "fair is foul", "label": "tragedy"}),
                       json.dumps({"text": "a horse", "label": "histroy"})],
                      r"train.jsonl:2: unknown label 'histroy'"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_bad_training_file_is_one_line(case: str, start_ckpt: Path, tmp_path: Path) -> None:
    recipe, lines, message = CASES[case]
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n")
    out = run("-m", "scratchllm.train", *recipe, f"init_from={start_ckpt}", "data.dataset=null",
              "data.train_paths=train.jsonl", "data.val_paths=train.jsonl", "trainer.max_steps=1", cwd=tmp_path)
    assert out.returncode == 2, out.stderr[-3000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert re.search(message, errors[0]), errors[0]
