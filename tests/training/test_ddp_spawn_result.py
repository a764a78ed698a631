"""result.json's step count and curve come from the fit itself, also under ``trainer=ddp_sim`` (ddp_spawn), where
the fit runs in child processes and the parent once estimated the step from a token count (a 2-step SFT run with
variable-length batches reported 1)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest
import torch

from scratchllm.training.run import train
from tests.finetune.conftest import save_start
from tests.training.conftest import run_cli


def test_result_in_process_matches_the_fit(make_cfg: Callable) -> None:
    # FAST: 6 steps, validated at 3 and 6; the in-process path reads the same FitResults values as ddp_spawn's
    result = train(make_cfg("sample.max_new_tokens=0", "validate=false"))
    assert result["global_step"] == 6
    assert [point["step"] for point in result["curve"]] == [3, 6]
    assert result["tokens_seen"] == result["curve"][-1]["tokens_seen"] == 6 * 8 * 32  # batch 8 × context 32
    assert isinstance(result["tokens_seen"], int) and isinstance(result["global_step"], int)


@pytest.mark.slow
def test_sft_under_ddp_sim_reports_the_real_step(tmp_path: Path) -> None:
    start = save_start(tmp_path / "pretrained.ckpt")
    run_dir = tmp_path / "run"
    out = run_cli("-m", "scratchllm.train", "experiment=sft_plays", f"init_from={start}", "trainer=ddp_sim",
                  "threads=1", "trainer.max_steps=2", "trainer.val_check_interval=2", "data.batch_size=4",
                  "data.max_val_windows=8", "data.builtin.per_play=2", "data.builtin.val_per_play=2",
                  "sample.max_new_tokens=0", f"hydra.run.dir={run_dir}", cwd=tmp_path,
                  env_extra={"OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-3000:])
    result = json.loads((run_dir / "result.json").read_text())
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2
    assert result["global_step"] == 2  # was 1: tokens // (batch × context × ranks), SFT batches are shorter
    # the curve used to stay behind in the child processes: one point, at the validation of step 2
    assert [point["step"] for point in result["curve"]] == [2]
    assert result["curve"][0]["tokens_seen"] == result["tokens_seen"] > 0
