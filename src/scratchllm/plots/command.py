"""What ``python -m scratchllm.plot`` does once Hydra has composed its config: read, draw, write one PNG."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from scratchllm.errors import ConfigError

KINDS = ("loss", "attention", "positions", "tokens")


@dataclass
class PlotOptions:
    """The fields of conf/plot.yaml (see there for what each one does)."""

    what: str = "loss"
    run: str | list[str] | None = None
    ckpt_path: str | None = None
    prompt: str = "ROMEO: But soft, what light through yonder window breaks?"
    tags: list[str] = field(default_factory=lambda: ["train/loss", "val/loss"])
    layers: list[int] | None = None
    out: str | None = None
    width: int | None = None
    height: int | None = None
    tokenizer: Mapping[str, Any] | None = None
    log_dir: str = "logs"

    def __post_init__(self) -> None:
        if self.what not in KINDS:
            raise ConfigError(f"what={self.what!r} is not a plot; choose one of: {', '.join(KINDS)}")
        for key in ("width", "height"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 100):
                raise ConfigError(f"{key} is in pixels and must be an integer >= 100 (or null), got {value!r}")
        if isinstance(self.run, (list, tuple)) and self.what != "loss" and len(self.run) != 1:
            raise ConfigError(f"what={self.what} draws one model: give one run (or ckpt_path=…), not {len(self.run)}")
        if not self.tags:
            raise ConfigError("tags is empty: name the scalars to draw, e.g. tags='[train/loss,val/loss]'")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "PlotOptions":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @property
    def output(self) -> Path:
        return Path(self.out) if self.out else Path("plots") / f"{self.what}.png"

    def checkpoint(self) -> str:
        """The checkpoint the model plots read: ckpt_path, else the run's last.ckpt, else the newest run's."""
        if self.ckpt_path:
            return self.ckpt_path
        run = self.run[0] if isinstance(self.run, (list, tuple)) else self.run
        return str(run) if run else "last"


def make_plot(options: PlotOptions) -> tuple[Path, dict]:
    """Draw ``options.what``; return the PNG written and the data drawn."""
    from scratchllm.plots import figures

    if options.what == "loss":
        from scratchllm.plots.runs import find_runs, read_curves

        runs = [read_curves(run, options.tags) for run in find_runs(options.run or options.log_dir)]
        print(f"{len(runs)} run(s): " + ", ".join(f"{r.name} ({r.source})" for r in runs), file=sys.stderr)
        fig, data = figures.loss_figure(runs, options.tags, options.width or 550 * len(options.tags),
                                        options.height or 420)
    else:
        from scratchllm.generation.loading import load_for_generation

        spec = {k: v for k, v in (options.tokenizer or {}).items() if v is not None} or None
        model, tokenizer = load_for_generation(options.checkpoint(), device="cpu", tokenizer=spec,
                                               log_dir=options.log_dir)
        print(f"model {model.config.name}: {model.config.n_layer} layers, {model.config.n_head} heads, "
              f"{model.config.attention} attention, {model.config.position} positions", file=sys.stderr)
        if options.what == "positions":
            fig, data = figures.positions_figure(model, options.width or 1200, options.height or 500)
        else:
            fig, data = _prompt_figure(model, tokenizer, options)
    path = figures.save(fig, options.output)
    print(f"wrote {path}", file=sys.stderr)
    return path, data


def _prompt_figure(model: Any, tokenizer: Any, options: PlotOptions) -> tuple[Any, dict]:
    from scratchllm.generation.text import encode_prompt
    from scratchllm.plots import figures
    from scratchllm.serving.inspect import inspect

    ids = encode_prompt(tokenizer, options.prompt)
    context = model.config.context_length
    if len(ids) > context:
        print(f"note: the prompt has {len(ids)} tokens; plotting its last {context} (the model's context)",
              file=sys.stderr)
        ids = ids[-context:]
    layers = options.layers
    if layers is not None:
        bad = [n for n in layers if not isinstance(n, int) or not 0 <= n < model.config.n_layer]
        if bad:
            raise ConfigError(f"layers={list(layers)}: the model has layers 0..{model.config.n_layer - 1}")
    seen = inspect(model, ids, attention=options.what == "attention")
    texts = [tokenizer.token_bytes(t).decode("utf-8", errors="replace") if tokenizer else str(t) for t in ids]
    if options.what == "attention":
        return figures.attention_figure(seen.attention, texts, layers, options.width, options.height)
    probs = [seen.token_probability(i) for i in range(len(ids))]
    return figures.tokens_figure(texts, probs, options.width, options.height or 500)
