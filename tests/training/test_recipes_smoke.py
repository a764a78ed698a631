"""Every ``experiment=`` recipe runs on CPU with the auto defaults (precision, compile, attention picked for this
machine), as a user types it, cut to a few steps: what changes per recipe is only the data it needs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scratchllm.paths import config_dir

RECIPES = sorted(p.stem for p in (config_dir() / "experiment").glob("*.yaml"))
PLAYS = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n" * 300
SHORT = ["trainer.max_steps=2", "trainer.val_check_interval=2", "trainer.limit_val_batches=2",
         "sample.max_new_tokens=8", "threads=1"]


def _extra(recipe: str, tmp_path: Path) -> list[str]:
    """The data a recipe reads from the user's disk (made here), and what a GPU-cluster recipe must drop on CPU."""
    if recipe.startswith("tinyshakespeare"):
        text = tmp_path / "tinyshakespeare.txt"
        text.write_text(PLAYS)
        return [f"data.path={text}", "+data.corpus.sha256=null"]
    if recipe == "gpt2_124m":
        from scratchllm.data import TextFiles, prepare_corpus

        corpus = tmp_path / "corpus.txt"
        corpus.write_text(PLAYS)
        prepared = prepare_corpus(TextFiles(str(corpus)), {"name": "gpt2"}, tmp_path / "shards")
        # the recipe is for 8 GPUs: one CPU process, one short sequence, no accumulation
        return [f"data.path={prepared.directory}", "trainer=cpu", "trainer.devices=1", "trainer.accumulate_grad_batches=1",
                "data.batch_size=1", "data.num_workers=0", "model.context_length=64"]
    return []


def test_every_recipe_is_smoke_run():
    assert {"tinyshakespeare_char", "tinyshakespeare_char_quick", "gpt2_124m", "sft_plays", "dpo_plays",
            "classify_plays", "shakespeare_char", "shakespeare_gpt2"} == set(RECIPES), "add the new recipe below"


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_runs_with_the_auto_defaults(recipe, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    proc = subprocess.run([sys.executable, "-m", "scratchllm.train", f"experiment={recipe}", *SHORT,
                           *_extra(recipe, tmp_path)], cwd=run, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(next(run.glob("logs/train/runs/*/result.json")).read_text())
    assert result["global_step"] == 2
    fast = result["fast_path"]
    # the recipe leaves these to the machine: nothing is left at `auto`, and a 2-step run stays eager
    assert fast["precision"] in ("bf16-mixed", "32-true") and fast["compile"] is False
    assert fast["model.attention"] == "sdpa"
    assert "fast path: precision=" in proc.stdout  # the start-up log says what auto picked
