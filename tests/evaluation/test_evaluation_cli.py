"""``python -m scratchllm.evaluate`` as a user types it (README "Evaluation"), in a fresh folder with a training
checkpoint under logs/: the tables on stdout, results.json/results.md, TensorBoard scalars, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCRATCHLLM_", "PYTEST_"))}
    return subprocess.run([sys.executable, "-m", "scratchllm.evaluate", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**env, "PYTHONUNBUFFERED": "1"})


@pytest.fixture
def workdir(trained_root: Path, tmp_path: Path) -> Path:
    (tmp_path / "logs").symlink_to(trained_root / "logs", target_is_directory=True)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("ROMEO:\nBut soft, what light through yonder window breaks?\n")
    (tmp_path / "notes" / "b.md").write_text("JULIET:\nO Romeo, Romeo, wherefore art thou Romeo?\n")
    (tmp_path / "quiz.jsonl").write_text(json.dumps({"context": "ROMEO:\n", "choices": ["Hi\n", "Ho\n"], "gold": 0})
                                         + "\n")
    return tmp_path


@pytest.mark.slow
def test_readme_command(workdir: Path):
    proc = run(["tasks=[shakespeare_next_line,quiz.jsonl]", "texts=[notes]", "limit=4", "out_dir=eval",
                "run_dir=logs/train/runs/r"], workdir)
    assert proc.returncode == 0, proc.stderr
    assert "| shakespeare_next_line | multiple_choice | 4 |" in proc.stdout and "**CORE**" in proc.stdout
    results = json.loads((workdir / "eval" / "results.json").read_text())
    assert set(results["tasks"]) == {"shakespeare_next_line", "quiz"}
    text = results["texts"]["notes"]
    body = "But soft, what light through yonder window breaks?\n" "O Romeo, Romeo, wherefore art thou Romeo?\n"
    assert text["bytes"] == len(("ROMEO:\n" + "JULIET:\n").encode()) + len(body.encode()) - 2  # first char each
    assert (workdir / "eval" / "results.md").read_text().startswith("# Evaluation of")

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(workdir / "logs" / "train" / "runs" / "r" / "tensorboard")).Reload()
    core = events.Scalars("eval/core")
    assert core[-1].value == pytest.approx(results["core"], abs=1e-6) and core[-1].step == 1


@pytest.mark.slow
def test_quantize_on_load_scores_the_int8_model(workdir: Path):
    """``quantize=int8`` evaluates the checkpoint's int8 weights (results say so) with its float loss nearly kept."""
    scores = {}
    for extra in ([], ["quantize=int8"]):
        out = f"eval{len(extra)}"
        proc = run(["texts=[notes]", f"out_dir={out}", *extra], workdir)
        assert proc.returncode == 0, proc.stderr
        scores[tuple(extra)] = json.loads((workdir / out / "results.json").read_text())
    float_run, int8_run = scores[()], scores[("quantize=int8",)]
    assert (float_run["weights"], int8_run["weights"]) == ("float", "int8")
    a, b = float_run["texts"]["notes"]["loss"], int8_run["texts"]["notes"]["loss"]
    assert a != b and b == pytest.approx(a, rel=0.01)


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["tasks=[no_such_task]"], "unknown task 'no_such_task'; choose a built-in one"),
    ([], "nothing to evaluate"),
    (["texts=[missing/]"], "no input files match 'missing/'"),
    (["tasks=[shakespeare_next_line]", "stride=0"], "stride must be an integer >= 1, got 0"),
    (["task=[shakespeare_next_line]"], "did you mean tasks="),
    (["texts=[notes]", "quantize=int9"], "quantize='int9' is not known; choose one of: none, int8, int4"),
])
def test_mistakes_are_one_line(workdir: Path, args, message):
    proc = run([*args, "out_dir=null"], workdir)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and message in lines[-1], proc.stderr


def test_quantized_scores_get_their_own_tensorboard_tags():
    """A run_dir's curves hold the float model's scores under eval/…; a quantized model's go beside them."""
    from scratchllm.evaluation.report import scalars

    results = {"texts": {"notes": {"loss": 1.0, "perplexity": 2.7, "bits_per_byte": 1.4}}, "tasks": {}, "core": None}
    assert set(scalars(results)) == {"eval/notes/loss", "eval/notes/perplexity", "eval/notes/bits_per_byte"}
    assert set(scalars({**results, "weights": "int4"})) == {
        "eval_int4/notes/loss", "eval_int4/notes/perplexity", "eval_int4/notes/bits_per_byte"}
