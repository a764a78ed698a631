"""`python -m scratchllm.plan` as the README writes it, in a fresh folder: files written, errors one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def plan(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scratchllm.plan", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)


def test_plan_1b_on_8_h100_writes_markdown_json_and_launchers(tmp_path):
    r = plan(tmp_path, "params=1b", "gpus=8", "gpu=h100")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "plans" / "llama-1b-8xh100"
    data = json.loads((out / "plan.json").read_text())
    assert data["model"]["params"] == 1_011_959_808
    t = data["training"]
    assert t["micro_batch"] * 8 * t["accumulation"] == t["global_batch_seqs"]
    assert (out / "plan.md").read_text().strip() == r.stdout.strip()
    # the plan says what made it, so it can be remade (or remade with one value changed)
    assert "Made by `python -m scratchllm.plan params=1b gpus=8 gpu=h100`." in r.stdout.splitlines()[:3]
    assert data["made_by"] == "python -m scratchllm.plan params=1b gpus=8 gpu=h100"
    assert "## Memory per device" in r.stdout and "GPU-hours" in r.stdout
    torchrun = (out / "launch_torchrun.sh").read_text()
    assert "torchrun --nnodes=1 --nproc-per-node=8" in torchrun and "-m scratchllm.train model=llama-1b" in torchrun
    assert "srun python -m scratchllm.train" in (out / "launch_slurm.sbatch").read_text()
    for script in ("launch_torchrun.sh", "launch_slurm.sbatch"):
        assert subprocess.run(["bash", "-n", str(out / script)]).returncode == 0


@pytest.mark.parametrize("args,needle", [
    (["params=1b", "gpu=v100"], "error: gpu='v100' is not a device the planner knows; choose one of: h100"),
    (["params=10b", "gpus=1", "gpu=l4"], "error: llama-10b does not fit 1 × l4: needs"),
    (["params=100k"], "error: params=100k is below the smallest preset (nano"),
    (["param=1b"], "error: param is not a setting of plan; did you mean params=1b?"),
])
def test_plan_errors_are_one_line(tmp_path, args, needle):
    r = plan(tmp_path, *args)
    assert r.returncode == 2
    assert r.stderr.strip().startswith(needle), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_plan_a_preset_with_changed_fields(tmp_path):
    r = plan(tmp_path, "model=gpt2-124m", "model.n_layer=6", "gpus=8", "gpu=a100-40gb", "tokens=10b",
             "context=1024", "out=p")
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "p" / "plan.json").read_text())
    assert data["model"]["config"]["n_layer"] == 6 and data["training"]["tokens"] == 10**10
    assert "model=gpt2-124m model.n_layer=6 " in (tmp_path / "p" / "launch_torchrun.sh").read_text()


def test_a_budget_nothing_fits_says_what_would(tmp_path):
    r = plan(tmp_path, "params=10b", "gpus=1", "gpu=l4")
    assert r.returncode == 2 and "even with FSDP full shard and full checkpointing" in r.stderr
    assert "try gpus=16" in r.stderr
    # the README quotes this message word for word (it drifted once when the memory model changed)
    readme = " ".join((REPO / "README.md").read_text().split())
    assert " ".join(r.stderr.split()) in readme.replace("`", "")
