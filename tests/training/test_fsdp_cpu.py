"""FSDP on 2 CPU processes (gloo, `trainer=fsdp_sim` under torchrun): the same run as DDP on the same data, a
sharded checkpoint folder that resumes to exactly where an uninterrupted run gets, an end-of-run sample from the
gathered weights, and a conversion to one regular checkpoint that `generate` loads."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from scratchllm import checkpoint
from tests.training.distributed_runs import env, finish, generate, result, torchrun, val_curve

pytestmark = pytest.mark.slow


def test_fsdp_sharded_checkpoint_resumes_exactly_converts_and_generates(tmp_path, data_cache):
    # one 6-step schedule for all three runs (it follows trainer.max_steps otherwise)
    cache, schedule = f"paths.cache_dir={data_cache}", "scheduler.total_steps=6"
    fsdp_dir, ddp_dir, resumed = tmp_path / "fsdp", tmp_path / "ddp", tmp_path / "resumed"
    # the uninterrupted reference (DDP, 6 steps) and the first 4 FSDP steps run side by side
    ddp = torchrun(tmp_path, ddp_dir, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", cache,
                   schedule, "trainer.max_steps=6")
    fsdp = torchrun(tmp_path, fsdp_dir, "trainer=fsdp_sim", cache, schedule, "sample.max_new_tokens=8")
    finish(ddp)
    finish(fsdp)

    # the checkpoint is a folder of shards (one per rank) and a metadata file; no save left anything beside it
    last = fsdp_dir / "checkpoints" / "last.ckpt"
    assert last.is_dir() and (last / "meta.pt").is_file() and (last / ".metadata").is_file()
    assert len(list(last.glob("*.distcp"))) == 2
    assert not [p.name for p in last.parent.iterdir() if p.name.startswith(".")]
    # the end-of-run sample: the weights gathered onto rank 0
    assert result(fsdp_dir)["sample"].startswith("\n") and len(result(fsdp_dir)["sample"]) > 1

    # resume under FSDP from the folder for 2 more steps: the run continues as if never stopped
    finish(torchrun(tmp_path, resumed, "trainer=fsdp_sim", cache, schedule, f"ckpt_path={last}",
                            "trainer.max_steps=6"))
    assert result(resumed)["global_step"] == 6
    curve, reference = val_curve(resumed), val_curve(ddp_dir)
    assert len(curve) == len(reference) == 3 and curve[-1] < curve[0]
    assert curve == pytest.approx(reference, abs=2e-4)  # the curve keeps 4 decimals

    # one regular checkpoint from the shards (the run folder names its last.ckpt), read like any other
    out = tmp_path / "model.ckpt"
    conv = subprocess.run([sys.executable, "-m", "scratchllm.export", "format=ckpt", f"ckpt_path={resumed}",
                           f"output={out}"], cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=300)
    assert conv.returncode == 0, conv.stderr[-2000:]
    merged, ref = checkpoint.load(out), checkpoint.load(ddp_dir / "checkpoints" / "last.ckpt")
    assert merged["global_step"] == ref["global_step"] == 6
    assert merged["state_dict"].keys() == ref["state_dict"].keys()
    for name, value in ref["state_dict"].items():  # lost optimizer state would be off by ~lr = 1e-3
        torch.testing.assert_close(merged["state_dict"][name], value, atol=2e-5, rtol=0, msg=name)
    (opt,), (ref_opt,) = merged["optimizer_states"], ref["optimizer_states"]
    assert [g["params"] for g in opt["param_groups"]] == [g["params"] for g in ref_opt["param_groups"]]
    for i, state in ref_opt["state"].items():  # keyed by index in the single-process order
        torch.testing.assert_close(opt["state"][i]["exp_avg"], state["exp_avg"], atol=1e-6, rtol=1e-3)

    gen = generate(tmp_path, out)
    assert gen.returncode == 0, gen.stderr[-2000:]
    assert gen.stdout.startswith("ROMEO:")
    # generate given the folder itself says how to convert it, in one line
    gen = generate(tmp_path, last)
    assert gen.returncode == 2 and "scratchllm.export format=ckpt" in gen.stderr
    assert len(gen.stderr.strip().splitlines()) == 1
