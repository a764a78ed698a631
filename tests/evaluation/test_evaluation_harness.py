"""The lm-evaluation-harness adapter gives our numbers: the same log-likelihoods per request, and an lm-eval run on
a local JSONL task (nothing downloaded) the same accuracy as our evaluator on the same items."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")

from lm_eval.api.instance import Instance  # noqa: E402

from scratchllm.evaluation.builtin import builtin_task  # noqa: E402
from scratchllm.evaluation.harness import ScratchLLM, write_task  # noqa: E402
from scratchllm.evaluation.runner import choice_loglikelihoods, run_task  # noqa: E402
from scratchllm.evaluation.scoring import score_text  # noqa: E402
from scratchllm.generation.loading import load_for_generation  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ckpt(trained_root: Path) -> Path:
    return trained_root / "logs" / "train" / "runs" / "r" / "checkpoints" / "last.ckpt"


def request(kind: str, args: tuple) -> Instance:
    return Instance(request_type=kind, doc={}, arguments=args, idx=0)


def test_adapter_loglikelihoods_equal_ours(ckpt):
    lm = ScratchLLM(ckpt_path=str(ckpt), batch_size="3")
    model, tok = load_for_generation(ckpt)
    task = builtin_task("shakespeare_next_line", 5, seed=1)
    ours = choice_loglikelihoods(model, tok, task.items)
    theirs = lm.loglikelihood([request("loglikelihood", (item.context, choice))
                               for item in task.items for choice in item.choices])
    assert [ll for ll, _ in theirs] == pytest.approx([v for row in ours for v in row], abs=1e-5)
    text = "ROMEO:\nBut soft, what light through yonder window breaks?\n" * 3
    rolling = lm.loglikelihood_rolling([request("loglikelihood_rolling", (text,))])[0]
    assert -rolling == pytest.approx(score_text(model, tok, text, stride=model.config.context_length).nll, abs=1e-4)
    out = lm.generate_until([request("generate_until", ("ROMEO:\n", {"until": ["\n"], "max_gen_toks": 5}))])[0]
    assert "\n" not in out and len(out) <= 5


@pytest.mark.slow
def test_lm_eval_run_on_a_local_task_matches_our_evaluator(ckpt, tmp_path):
    """`python -m scratchllm.lm_eval write-tasks …` then `… --model scratchllm …` as the README writes them,
    offline (HF_HUB_OFFLINE too, and an empty HF cache: nothing could have been downloaded before)."""
    task = builtin_task("shakespeare_next_line", 12, seed=2)
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    lm_eval = [sys.executable, "-m", "scratchllm.lm_eval"]
    for args in (["write-tasks", "shakespeare_next_line", "--limit", "12", "--seed", "2", "--out", "lm_eval_tasks"],
                 ["--model", "scratchllm", "--model_args", f"ckpt_path={ckpt}", "--tasks", "shakespeare_next_line",
                  "--include_path", "lm_eval_tasks/", "--output_path", "out"]):
        proc = subprocess.run(lm_eval + args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    found = list((tmp_path / "out").rglob("results_*.json"))
    assert found, proc.stdout[-2000:]
    theirs = json.loads(found[0].read_text())["results"]["shakespeare_next_line"]
    model, tok = load_for_generation(ckpt)
    ours = run_task(model, tok, task)
    assert theirs["acc,none"] == pytest.approx(ours["acc"])
    assert theirs["acc_norm,none"] == pytest.approx(ours["acc_norm"])


def test_write_task_refuses_generation_tasks(tmp_path):
    from scratchllm.errors import ConfigError
    from scratchllm.evaluation.tasks import GenerationItem, Task

    with pytest.raises(ConfigError, match="only multiple-choice"):
        write_task(Task("g", "generation", [GenerationItem("a", ("b",))]), tmp_path)


@pytest.mark.slow
def test_lm_eval_wrapper_errors_are_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "scratchllm.lm_eval", "write-tasks", "no_such_task"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: unknown task 'no_such_task'")
