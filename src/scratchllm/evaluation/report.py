"""Results out: ``results.json`` (everything), ``results.md`` (the tables a person reads) and TensorBoard scalars."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _interval(r: dict[str, Any], key: str) -> str:
    value, err = r.get(key), r.get(f"{key}_stderr")
    if value is None or err is None or math.isnan(err):
        return _fmt(value)
    return f"{value:.3f} ± {1.96 * err:.3f}"


def markdown(results: dict[str, Any]) -> str:
    """The texts table, the tasks table and the CORE line."""
    lines = [f"# Evaluation of `{results['ckpt_path']}`", ""]
    if results["texts"]:
        lines += ["| text | tokens | bytes | loss | perplexity | bits per byte |", "|---|---:|---:|---:|---:|---:|"]
        for name, r in results["texts"].items():
            lines.append(f"| {name} | {_fmt(r['tokens'])} | {_fmt(r['bytes'])} | {_fmt(r['loss'])} | "
                         f"{_fmt(r['perplexity'], 2)} | {_fmt(r['bits_per_byte'])} |")
        lines += ["", f"Sliding window: stride {results['stride']} of a {results['context_length']}-token context.",
                  ""]
    if results["tasks"]:
        lines += ["| task | kind | items | acc | acc_norm | exact match | chance | centered |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for name, r in results["tasks"].items():
            acc, norm, em = (_interval(r, key) for key in ("acc", "acc_norm", "exact_match"))
            lines.append(f"| {name} | {r['kind']} | {r['items']} | {acc} | {norm} | {em} | {_fmt(r['random'])} | "
                         f"{_fmt(r['centered'])} |")
        lines += ["", "Accuracies ± their 95% interval (1.96 standard errors, as lm-evaluation-harness computes "
                  "them).", "", f"**CORE** (mean centered accuracy): {_fmt(results['core'])}", ""]
    return "\n".join(lines)


def write_results(results: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """``results.json`` and ``results.md`` in ``out_dir`` (created)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "results.json", out / "results.md"
    json_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    md_path.write_text(markdown(results), encoding="utf-8")
    return json_path, md_path


def _tag_root(results: dict[str, Any]) -> str:
    """``eval``, or ``eval_int8`` / ``eval_int4`` for a quantized model's scores (``results["weights"]``)."""
    weights = results.get("weights", "float")
    return "eval" if weights == "float" else f"eval_{weights}"


def scalars(results: dict[str, Any]) -> dict[str, float]:
    """The numbers worth a curve, under ``eval/…`` tags (``eval_int8/…``, ``eval_int4/…`` for quantized weights:
    their scores must not land on the float model's curve at the same step)."""
    root = _tag_root(results)
    tags: dict[str, float] = {}
    for name, r in results["texts"].items():
        for key in ("loss", "perplexity", "bits_per_byte"):
            tags[f"{root}/{name}/{key}"] = r[key]
    for name, r in results["tasks"].items():
        for key in ("acc", "acc_norm", "exact_match", "centered"):
            if key in r:
                tags[f"{root}/{name}/{key}"] = r[key]
    if results["core"] is not None:
        tags[f"{root}/core"] = results["core"]
    return tags


def log_tensorboard(results: dict[str, Any], run_dir: str | Path, step: int) -> Path:
    """Write the scalars into the training run's TensorBoard folder (``<run>/tensorboard``, where its curves are),
    at the checkpoint's step, so they sit beside that run's curves."""
    from torch.utils.tensorboard import SummaryWriter

    folder = Path(run_dir) / "tensorboard"
    writer = SummaryWriter(log_dir=str(folder))
    try:
        for tag, value in scalars(results).items():
            writer.add_scalar(tag, value, global_step=step)
        writer.add_text(f"{_tag_root(results)}/results", markdown(results), global_step=step)
    finally:
        writer.close()
    return folder
