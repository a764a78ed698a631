"""The size presets of ``conf/model/`` as ``ModelConfig`` objects, without Hydra."""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

from scratchllm.errors import ConfigError
from scratchllm.model.config import ModelConfig
from scratchllm.paths import config_dir


def preset_names() -> list[str]:
    """Preset names, smallest first."""
    from scratchllm.model.report import param_report

    names = [p.stem for p in (config_dir() / "model").glob("*.yaml")]
    return sorted(names, key=lambda n: param_report(load_preset(n)).total)


def load_preset(name: str, **overrides: Any) -> ModelConfig:
    """``load_preset("nano", norm="rmsnorm")`` → the preset's ``ModelConfig`` with the overrides applied."""
    path = config_dir() / "model" / f"{name}.yaml"
    if not path.is_file():
        choices = ", ".join(sorted(p.stem for p in path.parent.glob("*.yaml")))
        raise ConfigError(f"unknown model preset {name!r}; choose one of: {choices}")
    data = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    assert isinstance(data, dict)
    data.pop("defaults", None)  # the preset lists what differs from ModelConfig's defaults (its Hydra base)
    return ModelConfig.from_dict({**data, **overrides})
