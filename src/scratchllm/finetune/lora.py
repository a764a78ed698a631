"""LoRA (Hu et al. 2021): a frozen linear plus a trainable low-rank update, ``W x + (alpha/r) · B A dropout(x)``.

It enters the model as a converter over its one linear construction point (``model.linear.convert``), choosing
linears by name the way peft's ``target_modules`` does (``"qkv"`` matches ``blocks.3.attn.qkv``). The numerics are
peft's, so the two agree to float rounding (tests/finetune/test_lora.py checks outputs and gradients):

- ``A`` (rank × in) starts Kaiming-uniform with a = √5 (``nn.Linear``'s own init), ``B`` (out × rank) at zero, so
  the converted model computes exactly what the base did until training moves ``B``;
- scaling ``alpha / rank``; dropout on the adapter's input only.

Names: the wrapper keeps the base's ``weight`` and ``bias`` as its own (a base checkpoint loads into a converted
model unchanged) and holds ``lora_A`` / ``lora_B`` as bias-free linears, so an adapter tensor is named
``blocks.0.attn.qkv.lora_A.weight``, which is peft's saved name once prefixed with ``base_model.model.``.

``merge`` folds ``(alpha/r) · B A`` into ``weight`` (inference at base speed), ``unmerge`` takes it out again.
The adapter alone (``save_adapter``) is a small safetensors file plus the config it needs, loaded back onto its
base with ``load_adapter``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from scratchllm.errors import CheckpointError, ConfigError
from scratchllm.model.linear import RESIDUAL_ATTR, convert

ADAPTER_FILE = "adapter.safetensors"
CONFIG_FILE = "adapter_config.json"


@dataclass
class LoRAConfig:
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: Sequence[str] = field(default_factory=lambda: ["attn.qkv", "attn.proj", "mlp.fc", "mlp.proj"])

    def __post_init__(self) -> None:
        if int(self.rank) < 1:
            raise ConfigError(f"adapter.rank must be >= 1, got {self.rank}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ConfigError(f"adapter.dropout must be in [0, 1), got {self.dropout}")
        if isinstance(self.targets, str):
            self.targets = [self.targets]
        self.rank, self.alpha, self.dropout, self.targets = int(self.rank), float(self.alpha), float(self.dropout), \
            [str(t) for t in self.targets]

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "lora", **asdict(self)}


class LoRALinear(nn.Module):
    """A frozen linear (its own ``weight``/``bias``) plus ``scaling · lora_B(lora_A(dropout(x)))``."""

    def __init__(self, base: nn.Linear, config: LoRAConfig) -> None:
        super().__init__()
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight
        self.bias = base.bias
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        setattr(self, RESIDUAL_ATTR, getattr(base, RESIDUAL_ATTR, False))
        device, dtype = base.weight.device, base.weight.dtype
        self.lora_A = nn.Linear(self.in_features, config.rank, bias=False, device=device, dtype=dtype)
        self.lora_B = nn.Linear(config.rank, self.out_features, bias=False, device=device, dtype=dtype)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))  # peft's default init ("init_lora_weights")
        nn.init.zeros_(self.lora_B.weight)
        self.lora_dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.scaling = config.scaling
        self.merged = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight, self.bias)
        if self.merged:
            return out
        return out + self.lora_B(self.lora_A(self.lora_dropout(x))) * self.scaling

    def delta(self) -> torch.Tensor:
        return (self.lora_B.weight @ self.lora_A.weight) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self.weight += self.delta().to(self.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.weight -= self.delta().to(self.weight.dtype)
            self.merged = False


def apply_lora(model: nn.Module, config: LoRAConfig | Mapping[str, Any]) -> list[str]:
    """Wrap the target linears of ``model`` in place, freeze everything else; returns the wrapped names."""
    if not isinstance(config, LoRAConfig):
        config = LoRAConfig(**{k: v for k, v in dict(config).items() if k not in ("kind", "_target_")})
    for p in model.parameters():
        p.requires_grad_(False)
    wrapped = convert(model, lambda linear: LoRALinear(linear, config), filter=config.targets)
    if not wrapped:
        names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][:6]
        raise ConfigError(f"adapter.targets={config.targets} match no linear of the model; its linears are named "
                          f"like {names}")
    model.lora_config = config  # what save_adapter writes beside the weights
    return wrapped


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def merge(model: nn.Module) -> None:
    for layer in lora_layers(model).values():
        layer.merge()


def unmerge(model: nn.Module) -> None:
    for layer in lora_layers(model).values():
        layer.unmerge()


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter's tensors alone (``<module>.lora_A.weight`` / ``lora_B.weight``)."""
    return {f"{name}.{part}.weight": getattr(layer, part).weight.detach().cpu().contiguous()
            for name, layer in lora_layers(model).items() for part in ("lora_A", "lora_B")}


def save_adapter(model: nn.Module, folder: str | Path) -> Path:
    """Write the adapter alone: ``adapter.safetensors`` + ``adapter_config.json`` (rank, alpha, targets, shapes)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config: LoRAConfig = model.lora_config
    save_file(adapter_state(model), folder / ADAPTER_FILE)
    shapes = {name: [layer.out_features, layer.in_features] for name, layer in lora_layers(model).items()}
    (folder / CONFIG_FILE).write_text(json.dumps({**config.to_dict(), "modules": shapes}, indent=2))
    return folder


def load_adapter(model: nn.Module, folder: str | Path) -> list[str]:
    """Wrap ``model`` as the saved adapter says and load its weights; a model of another shape is refused."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / CONFIG_FILE).is_file() or not (folder / ADAPTER_FILE).is_file():
        raise CheckpointError(f"{folder} holds no adapter ({CONFIG_FILE} + {ADAPTER_FILE}); pass a folder that "
                              "save_adapter wrote")
    saved = json.loads((folder / CONFIG_FILE).read_text())
    modules = dict(model.named_modules())
    for name, (out_f, in_f) in saved["modules"].items():
        m = modules.get(name)
        have = (m.out_features, m.in_features) if isinstance(m, (nn.Linear, LoRALinear)) else None
        if have != (out_f, in_f):
            raise CheckpointError(f"the adapter in {folder} was trained on a model of another shape: {name} is "
                                  f"{out_f}x{in_f} there, {'missing' if have is None else 'x'.join(map(str, have))} "
                                  "here; load it onto the base model it was trained with")
    wrapped = apply_lora(model, {k: v for k, v in saved.items() if k != "modules"})
    state = load_file(folder / ADAPTER_FILE)
    missing, unexpected = model.load_state_dict(state, strict=False)
    unexpected = [k for k in unexpected]
    if unexpected or any("lora_" in k for k in missing):
        raise CheckpointError(f"the adapter in {folder} does not fit this model's LoRA layers; it is damaged")
    return wrapped
