"""Launching `python -m scratchllm.train` under torchrun on this machine (loopback only), for the FSDP and
multi-node tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.training.conftest import FAST

TORCHRUN = str(Path(sys.executable).parent / "torchrun")
# 4 optimizer steps, validated at 2 and 4, no end-of-run sample (run.py samples from the unsharded model)
# fp32 named: the DDP reference and the sharded runs must compute alike on every machine (auto would pick
# bf16-mixed on an AMX CPU, where Lightning's FSDP plugin casts the weights themselves to bf16)
TINY = [*FAST, "trainer.max_steps=4", "trainer.val_check_interval=2", "sample.max_new_tokens=0", "threads=1",
        "precision=32-true"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict[str, str]:
    e = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    e.pop("PYTEST_CURRENT_TEST", None)
    return e


def torchrun(cwd: Path, run_dir: Path, *overrides: str, nnodes: int = 1, nproc: int = 2, port: int | None = None,
             node_rank: int | None = None, timeout: int = 600) -> subprocess.Popen:
    """One torchrun launch (one "node") with c10d rendezvous on 127.0.0.1; every rank writes to ``run_dir``."""
    port = port or free_port()
    cmd = [TORCHRUN, f"--nnodes={nnodes}", f"--nproc-per-node={nproc}", "--rdzv-backend=c10d",
           f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=test", "--local-addr=127.0.0.1",
           *([f"--node-rank={node_rank}"] if node_rank is not None else []),
           "-m", "scratchllm.train", *TINY, *overrides, f"hydra.run.dir={run_dir}"]
    return subprocess.Popen(cmd, cwd=cwd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, timeout: int = 600) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-4000:]
    return out


def result(run_dir: Path) -> dict:
    return json.loads((run_dir / "result.json").read_text())


def val_curve(run_dir: Path) -> list[float]:
    return [point["val_loss"] for point in result(run_dir)["curve"]]


def generate(cwd: Path, ckpt: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scratchllm.generate", f"ckpt_path={ckpt}", "prompt=ROMEO:",
                           "max_new_tokens=8", "seed=1"], cwd=cwd, env=env(), capture_output=True, text=True,
                          timeout=300)
