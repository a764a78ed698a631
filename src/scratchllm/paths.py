"""Where the project's Hydra configs live, found from the package so entry points work from any directory."""

from __future__ import annotations

import os
from pathlib import Path

from scratchllm.errors import ConfigError


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
