"""Fixtures that compose the real conf/train.yaml the way the entry point does, with paths under tmp dirs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from scratchllm.paths import config_dir

REPO = Path(__file__).resolve().parents[2]
# Small and quick everywhere: nano model, short context, few steps, no sample unless a test asks. fp32 named: the
# default precision=auto would be bf16-mixed on an AMX / AVX512-BF16 CI machine and fp32 elsewhere, and a test
# should compute the same on every machine (the auto choices have their own tests: test_auto, test_recipes_smoke).
FAST = [
    "precision=32-true",
    "model=nano",
    "model.context_length=32",
    "data.batch_size=8",
    "data.max_val_windows=16",
    "trainer.max_steps=6",
    "trainer.val_check_interval=3",
    "trainer.log_every_n_steps=1",
    "scheduler.warmup_steps=2",
    # the default 3e-3 suits the default run's 100 warmup steps; after 2, a 6-step DDP run here jumped from 3.38 to
    # 5.61 at its last step. These runs compare ways of training, not learning rates: the pre-2026-12-03 default
    "optim.lr=1e-3",
    "sample.max_new_tokens=8",
]


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One shard cache for the whole session: the plays corpus is prepared once."""
    return tmp_path_factory.mktemp("data_cache")


@pytest.fixture
def make_cfg(tmp_path: Path, data_cache: Path) -> Callable[..., DictConfig]:
    def _make(*overrides: str, output: str = "run") -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_dir(str(config_dir()), version_base="1.3"):
            cfg = compose(
                "train",
                overrides=[
                    *FAST,
                    f"paths.root_dir={tmp_path}",
                    f"paths.cache_dir={data_cache}",
                    "threads=null",  # in-process: keep the test session's thread pin (tests/conftest.py)
                    "heap=default",  # and its allocator: mallopt would change the pytest process for good
                    *overrides,
                ],
                return_hydra_config=True,
            )
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / output)
            cfg.hydra.runtime.output_dir = str(tmp_path / output)
            cfg.hydra.job.num = 0
        HydraConfig().set_config(cfg)
        return cfg

    yield _make
    GlobalHydra.instance().clear()


def run_cli(*args: str, cwd: Path, env_extra: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``python -m scratchllm.train`` (or another module given as ``-m x``) in a subprocess."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0", **(env_extra or {})}
    env.pop("PYTEST_CURRENT_TEST", None)
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
