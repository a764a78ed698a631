"""The pictures: loss curves of runs, attention maps, position encodings, token probabilities.

Every function returns ``(figure, data)``: ``data`` holds exactly the numbers drawn (the tests compare it with
what was read and with the figure's own artists), the figure is a bare ``matplotlib.figure.Figure`` (no pyplot
state, no display: it works headless). Sizes are in pixels at ``DPI``; ``save`` writes exactly that many.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure

from scratchllm.model.layers import apply_rope, rope_cos_sin
from scratchllm.plots.runs import RunCurves

DPI = 100


def new_figure(width: int, height: int) -> Figure:
    return Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")


def save(fig: Figure, path: str | Path) -> Path:
    """Write a PNG of exactly the figure's pixel size (no tight bounding box, which would change it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png")
    return path


def token_label(text: str) -> str:
    """A token as a tick label: whitespace made visible, long tokens shortened."""
    shown = text.replace("\n", "↵").replace("\t", "⇥").replace(" ", "␣")
    return shown if len(shown) <= 12 else shown[:11] + "…"


# ------------------------------------------------------------------------------------------------- runs
def loss_figure(runs: Sequence[RunCurves], tags: Sequence[str], width: int, height: int) -> tuple[Figure, dict]:
    """One panel per tag (``train/loss``, ``val/loss`` …), one line per run."""
    fig = new_figure(width, height)
    axes = fig.subplots(1, len(tags), squeeze=False)[0]
    data: dict[str, dict[str, tuple[list[int], list[float]]]] = {}
    for ax, tag in zip(axes, tags):
        data[tag] = {}
        for run in runs:
            if tag in run.scalars:
                steps, values = run.scalars[tag]
                ax.plot(steps, values, label=run.name, marker="o" if len(steps) < 20 else None, markersize=3)
                data[tag][run.name] = (steps, values)
        ax.set_title(tag)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if data[tag]:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    return fig, data


# -------------------------------------------------------------------------------------------- attention
def attention_figure(attention: torch.Tensor, tokens: Sequence[str], layers: Sequence[int] | None = None,
                     width: int | None = None, height: int | None = None) -> tuple[Figure, dict]:
    """A layers × heads grid of attention maps (rows: queries, columns: keys). ``attention``: (L, H, T, T)."""
    layers = list(range(attention.shape[0])) if layers is None else list(layers)
    n_heads = attention.shape[1]
    width = width or 60 + 220 * n_heads
    height = height or 60 + 220 * len(layers)
    fig = new_figure(width, height)
    axes = fig.subplots(len(layers), n_heads, squeeze=False)
    labels = [token_label(t) for t in tokens]
    show_ticks = len(tokens) <= 24
    maps = {}
    for row, layer in zip(axes, layers):
        for h, ax in enumerate(row):
            weights = attention[layer, h].numpy()
            # sqrt scale: a weight of 0.05 stays visible next to one of 0.9
            ax.imshow(weights, cmap="Blues", norm=PowerNorm(0.5, vmin=0, vmax=1), interpolation="nearest")
            maps[(layer, h)] = weights
            ax.set_title(f"layer {layer} head {h}", fontsize=9)
            if show_ticks:
                ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
                ax.set_yticks(range(len(labels)), labels, fontsize=6)
            else:
                ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle("attention weights (row = query token, column = key token it reads)", fontsize=10)
    return fig, {"maps": maps, "tokens": list(tokens)}


# -------------------------------------------------------------------------------------------- positions
def positions_figure(model: torch.nn.Module, width: int, height: int) -> tuple[Figure, dict]:
    """Learned embeddings: how similar position i's vector is to position j's, and a few of its dimensions.
    RoPE (no parameters): the rotation each frequency pair applies at each position, and how the score of a query
    and key that are the same vector falls with their distance (RoPE's relative-position signal)."""
    cfg = model.config
    fig = new_figure(width, height)
    left, right = fig.subplots(1, 2)
    if model.pos_emb is not None:
        # looked up rather than read as .weight: a quantized file's table is int8 rows (quantization/model.py)
        with torch.no_grad():
            emb = model.pos_emb(torch.arange(cfg.context_length)).float()
        unit = emb / emb.norm(dim=1, keepdim=True).clamp_min(1e-12)
        similarity = (unit @ unit.T).numpy()
        image = left.imshow(similarity, cmap="RdBu_r", vmin=-1, vmax=1)
        fig.colorbar(image, ax=left, shrink=0.8)
        left.set_title("learned: cosine similarity of position embeddings")
        left.set_xlabel("position"), left.set_ylabel("position")
        dims = emb[:, :6].numpy()
        for d in range(dims.shape[1]):
            right.plot(dims[:, d], label=f"dim {d}")
        right.set_title("learned: first dimensions over position")
        right.set_xlabel("position"), right.legend(fontsize=7)
        return fig, {"kind": "learned", "similarity": similarity, "dims": dims}
    # the model's own RoPE tables: pairs (i, i + head_dim/2) share the angle position · θ_i
    positions = torch.arange(cfg.context_length)
    cos, sin = rope_cos_sin(positions, cfg.head_dim, cfg.rope_theta, torch.float32)
    cosines = cos[:, : cfg.head_dim // 2].T.numpy()  # (pairs, positions)
    image = left.imshow(cosines, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    fig.colorbar(image, ax=left, shrink=0.8)
    left.set_title(f"RoPE: cos(position · θ_i), θ = {cfg.rope_theta:g}")
    left.set_xlabel("position"), left.set_ylabel("frequency pair i (fast → slow)")
    # a unit query spread evenly over the pairs, rotated to each position, scored against itself at position 0
    q = torch.full((1, 1, cfg.context_length, cfg.head_dim), cfg.head_dim ** -0.5)
    score = (apply_rope(q, cos, sin)[0, 0] @ q[0, 0, 0]).numpy()
    distance = positions.numpy()
    right.plot(distance, score)
    right.set_title("RoPE: q·k of equal unit vectors vs distance")
    right.set_xlabel("distance between query and key"), right.grid(alpha=0.3)
    return fig, {"kind": "rope", "cosines": cosines, "distance": distance, "score": score}


# ----------------------------------------------------------------------------------------------- tokens
def tokens_figure(tokens: Sequence[str], probs: Sequence[float | None], width: int | None = None,
                  height: int = 500) -> tuple[Figure, dict]:
    """Each token of a text with the probability the model gave it (top) and its loss in bits (bottom); the first
    token has none (nothing predicted it)."""
    width = width or max(800, 40 + 26 * len(tokens))
    fig = new_figure(width, height)
    top, bottom = fig.subplots(2, 1, sharex=True)
    x = np.arange(len(tokens))
    p = np.array([np.nan if q is None else q for q in probs], dtype=np.float64)
    bits = -np.log2(p)
    top.bar(x, np.nan_to_num(p), color=[_heat(q) for q in p])
    top.set_ylim(0, 1), top.set_ylabel("P(token | before)")
    mean = np.nanmean(bits) if np.isfinite(bits).any() else math.nan
    top.set_title(f"{len(tokens)} tokens, mean loss {mean:.3f} bits/token ({mean * math.log(2):.3f} nats)")
    bottom.bar(x, np.nan_to_num(bits), color="#555")
    bottom.set_ylabel("loss (bits)")
    labels = [token_label(t) for t in tokens]
    upright = max(map(len, labels), default=0) <= 2  # characters read better upright, words turned
    bottom.set_xticks(x, labels, rotation=0 if upright else 90, fontsize=8, family="monospace")
    return fig, {"tokens": list(tokens), "probs": p, "bits": bits}


def _heat(p: float) -> Any:
    """Green for likely tokens, red for surprising ones (grey: no probability)."""
    if np.isnan(p):
        return "#cccccc"
    return (1 - p) * np.array([0.85, 0.2, 0.2]) + p * np.array([0.2, 0.65, 0.3])
