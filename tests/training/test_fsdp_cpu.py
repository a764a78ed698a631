"""FSDP on 2 CPU processes (gloo, `trainer=fsdp_sim` under torchrun): the same losses as DDP on the same data,
a checkpoint that resumes under FSDP and that `generate` loads."""

from __future__ import annotations

import pytest

from scratchllm import checkpoint
from tests.training.distributed_runs import finish, generate, result, torchrun, val_curve

pytestmark = pytest.mark.slow


def test_fsdp_matches_ddp_then_resumes_and_generates(tmp_path, data_cache):
    cache = f"paths.cache_dir={data_cache}"
    fsdp_dir, ddp_dir = tmp_path / "fsdp", tmp_path / "ddp"
    finish(torchrun(tmp_path, fsdp_dir, "trainer=fsdp_sim", cache))
    finish(torchrun(tmp_path, ddp_dir, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", cache))

    # both shard the data by rank and average gradients over the 2 processes: the same run, step for step
    fsdp, ddp = val_curve(fsdp_dir), val_curve(ddp_dir)
    assert len(fsdp) == len(ddp) == 2 and fsdp[-1] < fsdp[0]
    assert fsdp == pytest.approx(ddp, abs=2e-4)  # the curve keeps 4 decimals
    assert result(fsdp_dir)["global_step"] == 4

    # the checkpoint is one regular file (gathered to rank 0), verified by the checkpoint module
    last = fsdp_dir / "checkpoints" / "last.ckpt"
    ckpt = checkpoint.load(last)
    assert checkpoint.describe(ckpt).model["n_layer"] == 4
    assert not any(k.startswith("_fsdp") or "_flat_param" in k for k in ckpt["state_dict"])

    # resume under FSDP for 2 more steps
    resumed = tmp_path / "resumed"
    finish(torchrun(tmp_path, resumed, "trainer=fsdp_sim", cache, f"ckpt_path={last}", "trainer.max_steps=6"))
    assert result(resumed)["global_step"] == 6

    # and `generate` reads it like any training checkpoint
    gen = generate(tmp_path, resumed / "checkpoints" / "last.ckpt")
    assert gen.returncode == 0, gen.stderr[-2000:]
    assert gen.stdout.startswith("ROMEO:")
