"""Which model a parameter budget means: a preset, or a Llama-style shape derived from the budget."""

from __future__ import annotations

import re
from dataclasses import dataclass

from scratchllm.errors import ConfigError
from scratchllm.model.config import ModelConfig
from scratchllm.model.presets import load_preset, preset_names
from scratchllm.model.report import param_report

# `params=1b` / `params=10b` mean the presets built for them (README's preset table).
NAMED_BUDGETS = {"1b": "llama-1b", "10b": "llama-10b"}
_SUFFIX = {"k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}
# The derivation below: Llama 2's proportions (7B: width 4096 = 128 × 32 layers; 13B: 5120 = 128 × 40).
HEAD_DIM = 128
WIDTH_PER_LAYER = 128
DERIVE_RULE = (
    "Llama-style (RMSNorm, SwiGLU hidden 8/3·width rounded to 256, RoPE, untied, no bias), head size 128, "
    "width = 128 × depth (Llama 2 7B: 4096 = 128·32, 13B: 5120 = 128·40), KV heads: the largest divisor of n_head "
    "up to n_head/4 (GQA); "
    "the depth whose exact parameter count is nearest the budget"
)


@dataclass(frozen=True)
class Shape:
    config: ModelConfig
    rule: str  # how the shape was chosen
    base: str  # the preset the training command starts from (its variant fields equal the config's)


def parse_count(text: object, what: str = "params") -> int:
    """'1b' → 10**9, '350m' → 350·10**6, '1.5e9' or 124000000 → itself."""
    s = str(text).strip().lower().replace("_", "").replace(",", "")
    m = re.fullmatch(r"(\d+(?:\.\d+)?(?:e\d+)?)([kmbt]?)", s)
    if not m:
        raise ConfigError(f"{what}={text!r} is not a count; write e.g. {what}=1b, {what}=350m or {what}=124000000")
    return int(float(m.group(1)) * _SUFFIX.get(m.group(2), 1))


def resolve_shape(params: object | None, model: str | ModelConfig | None, context: int | None,
                  vocab_size: int) -> Shape:
    """The model to plan for: a preset (its name, or its config as ``model=<preset>`` composed it), a named budget,
    or a shape derived from ``params``."""
    if model is None and params is None:
        raise ConfigError("say what to plan: params=1b, params=10b, params=<count> or model=<preset>")
    changes = {"context_length": int(context)} if context else {}
    if model is not None:
        cfg = load_preset(model) if isinstance(model, str) else model
        return Shape(cfg.replace(**changes), f"preset `{cfg.name}` (model={cfg.name})", cfg.name)
    key = str(params).strip().lower()
    if key in NAMED_BUDGETS:
        name = NAMED_BUDGETS[key]
        return Shape(load_preset(name, **changes), f"preset `{name}`, the one built for params={key}", name)
    budget = parse_count(params)
    smallest = preset_names()[0]
    floor = param_report(load_preset(smallest)).total
    if budget < floor:
        raise ConfigError(
            f"params={params} is below the smallest preset ({smallest}, {floor:,} parameters); "
            f"plan at least params={floor} or pass model={smallest}"
        )
    return Shape(derive(budget, context or 2048, vocab_size), DERIVE_RULE, "llama-1b")


def _llama(depth: int, context: int, vocab_size: int) -> ModelConfig:
    width = WIDTH_PER_LAYER * depth
    n_head = max(1, width // HEAD_DIM)
    n_kv = max(d for d in range(1, n_head + 1) if n_head % d == 0 and d <= max(1, n_head // 4))
    return ModelConfig(
        vocab_size=vocab_size, context_length=context, n_layer=depth, n_head=n_head, n_kv_head=n_kv,
        n_embd=width, norm="rmsnorm", mlp="swiglu", position="rope", tie_embeddings=False, bias=False,
        name=f"llama-d{depth}",
    )


def derive(budget: int, context: int, vocab_size: int) -> ModelConfig:
    """The Llama-style shape (DERIVE_RULE) whose parameter count is nearest ``budget``."""
    best = min(
        (_llama(depth, context, vocab_size) for depth in range(1, 129)),
        key=lambda c: abs(param_report(c).total - budget),
    )
    got = param_report(best).total
    if abs(got - budget) > 0.25 * budget:
        raise ConfigError(
            f"params={budget:,} cannot be met by the derived Llama shapes with a {vocab_size:,}-token vocabulary "
            f"(nearest: {got:,}); pass model=<preset> or a smaller vocab_size"
        )
    return best
