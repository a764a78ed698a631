"""Where the project's Hydra configs live, found from the package so entry points work from any directory."""

from __future__ import annotations

import os
import secrets
from datetime import datetime
from pathlib import Path

from omegaconf import OmegaConf

from scratchllm.errors import ConfigError


def project_root() -> str:
    """Where ``logs/`` and ``data_cache/`` go: ``$SCRATCHLLM_ROOT`` if set, else the folder the command runs in.

    Registered as the ``${scratchllm.root:}`` resolver (conf/paths/default.yaml). It must not depend on Hydra's
    runtime config: a multirun sweeper resolves ``hydra.sweep.dir`` (→ ``paths.log_dir`` → here) before
    ``HydraConfig`` is set, so ``${hydra:runtime.cwd}`` crashed every sweep. Hydra 1.3 never changes the working
    directory (``job.chdir: false``), so the process's cwd is the command's folder in every job.
    """
    return os.environ.get("SCRATCHLLM_ROOT") or os.getcwd()


def run_stamp() -> str:
    """A run folder's name, e.g. ``2026-12-02_05-25-03_481516_a3f9c0``: the start time to the microsecond, then a
    random suffix.

    Registered as ``${scratchllm.run_stamp:}`` (conf/hydra/default.yaml). Hydra's ``${now:%Y-%m-%d_%H-%M-%S}`` has
    one-second resolution: two trainings started in the same second shared a folder (mixed metrics, one's
    config.yaml with the other's overrides.yaml, both checkpoints). Microseconds separate runs started one after
    the other, the suffix runs started at the same instant (other processes, other machines on a shared disk);
    the name still sorts by start time. Cached like ``now`` (``use_cache``), so one run resolves it once and a
    multirun's jobs share their sweep folder (Hydra copies the resolver cache into every job's config).
    """
    now = datetime.now()
    return f"{now:%Y-%m-%d_%H-%M-%S_%f}_{secrets.token_hex(3)}"


# Importing this module (every entry point and test does, for config_dir) makes the resolvers available.
OmegaConf.register_new_resolver("scratchllm.root", project_root, replace=True)
OmegaConf.register_new_resolver("scratchllm.run_stamp", run_stamp, use_cache=True, replace=True)


def config_dir() -> Path:
    """The ``conf/`` folder: ``$SCRATCHLLM_CONF`` if set, else the one beside ``src/`` (editable install)."""
    override = os.environ.get("SCRATCHLLM_CONF")
    candidates = [Path(override)] if override else []
    here = Path(__file__).resolve().parent
    candidates += [here.parents[1] / "conf", here / "conf"]
    for candidate in candidates:
        if (candidate / "train.yaml").is_file() or (candidate / "model").is_dir():
            return candidate
    raise ConfigError(
        "cannot find scratchllm's conf/ folder; install the project in editable mode (scripts/setup.sh) "
        "or point SCRATCHLLM_CONF at a copy of conf/"
    )
