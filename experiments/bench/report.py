"""Turn job results into the Markdown report and the CSV (one CSV row per run, repeats included).

The Markdown shows, per configuration and loop, the run with the median tokens/s (with the spread when repeated),
MFU against the measured ceiling of the dtype the step computes in, and an overhead table: each Lightning variant's
tokens/s beside the plain loop's on the same configuration, as a percentage and as extra milliseconds per step.
"""

from __future__ import annotations

import csv
import dataclasses
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.ceilings import Ceilings
from bench.plan import LOOPS, Job

# The target: the Trainer within 3% of the plain loop's tokens/s on micro in the default precision
# (precision 32-true, compile false; with either AdamW: foreach was the CPU default when it was set, fused is now).
TARGET_OVERHEAD_PCT = 3.0


@dataclasses.dataclass
class Run:
    job: Job
    result: dict[str, Any]

    @property
    def ok(self) -> bool:
        return "error" not in self.result

    def mfu(self, ceilings: Ceilings) -> float:
        return 100 * self.result["achieved_gflops"] / ceilings.peak_gflops(self.job.precision)


def _median_run(runs: list[Run]) -> Run:
    ordered = sorted(runs, key=lambda r: r.result["tokens_per_s"])
    return ordered[(len(ordered) - 1) // 2]


def group(runs: list[Run]) -> dict[tuple, dict[str, list[Run]]]:
    """config key → loop → its successful runs, in plan order."""
    out: dict[tuple, dict[str, list[Run]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        if run.ok:
            out[run.job.config_key][run.job.loop].append(run)
    return out


def _header(cols: list[str], first_numeric: int) -> list[str]:
    """A Markdown table's header rows; columns from ``first_numeric`` on are right-aligned."""
    align = "|".join("---:" if i >= first_numeric else "---" for i in range(len(cols)))
    return ["| " + " | ".join(cols) + " |", "|" + align + "|"]


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


def results_table(runs: list[Run], ceilings: Ceilings, device: str) -> str:
    memory_col = "peak CUDA MiB" if device == "cuda" else "peak RSS MiB (Δ baseline)"
    cols = ["model", "params", "batch×ctx", "precision", "compile", "optimizer", "attention", "loop", "tokens/s",
            "step ms (median; min–max)", "CPU ms/step", "MFU", memory_col, "compile s", "runs"]
    lines = _header(cols, first_numeric=8)
    for key, loops in group(runs).items():
        for loop in [x for x in LOOPS if x in loops]:
            rs = loops[loop]
            r = _median_run(rs)
            j, res = r.job, r.result
            rates = [x.result["tokens_per_s"] for x in rs]
            spread = f" ({min(rates):,.0f}–{max(rates):,.0f})" if len(rs) > 1 else ""
            if device == "cuda":
                memory = f"{res['cuda_peak_mib']:,.0f}"
            else:
                memory = f"{res['peak_rss_mib']:,.0f} (+{res['peak_rss_mib'] - res['baseline_rss_mib']:,.0f})"
            lines.append("| " + " | ".join([
                j.model, f"{res['params'] / 1e6:.2f}M", f"{j.batch}×{res['context']}", j.precision,
                "on" if j.compile else "off", j.optimizer, j.attention, loop, f"{res['tokens_per_s']:,.0f}{spread}",
                f"{_ms(res['step_s_median'])}; {_ms(res['step_s_min'])}–{_ms(res['step_s_max'])}",
                _ms(res["cpu_s_per_step"]),
                f"{r.mfu(ceilings):.1f}%", memory, f"{res['compile_s']:.1f}" if j.compile else "–", str(len(rs)),
            ]) + " |")
    return "\n".join(lines)


def overhead_rows(runs: list[Run]) -> list[dict[str, Any]]:
    """Per configuration with a plain run: each Lightning variant's tokens/s relative to the plain loop's."""
    rows = []
    for key, loops in group(runs).items():
        if "plain" not in loops:
            continue
        plain = _median_run(loops["plain"]).result
        for loop in ("lightning", "lightning-default"):
            if loop not in loops:
                continue
            other = _median_run(loops[loop]).result
            rows.append({
                "job": loops[loop][0].job,
                "loop": loop,
                "plain_tokens_per_s": plain["tokens_per_s"],
                "tokens_per_s": other["tokens_per_s"],
                "overhead_pct": 100 * (1 - other["tokens_per_s"] / plain["tokens_per_s"]),
                "extra_ms_per_step": 1e3 * (other["step_s_mean"] - plain["step_s_mean"]),
                "extra_cpu_ms_per_step": 1e3 * (other["cpu_s_per_step"] - plain["cpu_s_per_step"]),
            })
    return rows


def overhead_table(rows: list[dict[str, Any]]) -> str:
    cols = ["model", "precision", "compile", "optimizer", "loop", "plain tokens/s", "tokens/s", "slower than plain",
            "extra ms/step", "extra CPU ms/step"]
    lines = _header(cols, first_numeric=5)
    for row in rows:
        j = row["job"]
        lines.append("| " + " | ".join([
            j.model, j.precision, "on" if j.compile else "off", j.optimizer, row["loop"],
            f"{row['plain_tokens_per_s']:,.0f}", f"{row['tokens_per_s']:,.0f}", f"{row['overhead_pct']:+.1f}%",
            f"{row['extra_ms_per_step']:+.1f}", f"{row['extra_cpu_ms_per_step']:+.1f}",
        ]) + " |")
    return "\n".join(lines)


def target_checks(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for row in rows:
        j = row["job"]
        if (j.model, j.precision, j.compile, j.attention, row["loop"]) == (
                "micro", "32-true", False, "sdpa", "lightning"):
            met = row["overhead_pct"] <= TARGET_OVERHEAD_PCT
            out.append(f"- Trainer vs plain loop on micro, 32-true, compile off, {j.optimizer}: "
                       f"{row['overhead_pct']:+.1f}% tokens/s (target ≤ {TARGET_OVERHEAD_PCT:.0f}%) → "
                       f"{'met' if met else 'NOT met'}")
    if not out:
        out.append("- Trainer-overhead target (micro, 32-true, compile off, plain + lightning): not in this run's grid")
    return out


# The target: the best configuration ≥ 2.5× the tokens/s of eager fp32 on micro (same loop, same batch).
TARGET_SPEEDUP = 2.5


def speedup_rows(runs: list[Run]) -> list[dict[str, Any]]:
    """Per model, batch × context and loop: every configuration's tokens/s over that of eager 32-true with the
    default attention and the first optimizer listed (the reference), best first."""
    by_shape: dict[tuple, list[Run]] = defaultdict(list)
    for key, loops in group(runs).items():
        for loop, rs in loops.items():
            r = _median_run(rs)
            by_shape[(r.job.model, r.job.context, r.job.batch, loop)].append(r)
    rows = []
    for (model, _, _, loop), rs in by_shape.items():
        refs = [r for r in rs if r.job.precision == "32-true" and not r.job.compile and r.job.attention == "sdpa"]
        if not refs:
            continue
        ref = refs[0]
        for r in sorted(rs, key=lambda x: -x.result["tokens_per_s"]):
            rows.append({"job": r.job, "loop": loop, "tokens_per_s": r.result["tokens_per_s"],
                         "reference_tokens_per_s": ref.result["tokens_per_s"], "reference": ref.job,
                         "speedup": r.result["tokens_per_s"] / ref.result["tokens_per_s"]})
    return rows


def speedup_table(rows: list[dict[str, Any]]) -> str:
    cols = ["model", "loop", "precision", "compile", "optimizer", "attention", "tokens/s", "eager fp32 tokens/s",
            "speed-up"]
    lines = _header(cols, first_numeric=6)
    for row in rows:
        j = row["job"]
        lines.append("| " + " | ".join([
            j.model, row["loop"], j.precision, "on" if j.compile else "off", j.optimizer, j.attention,
            f"{row['tokens_per_s']:,.0f}", f"{row['reference_tokens_per_s']:,.0f}", f"{row['speedup']:.2f}×",
        ]) + " |")
    return "\n".join(lines)


def speedup_checks(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["job"].model == "micro" and row["speedup"] > best.get(row["loop"], {}).get("speedup", 0):
            best[row["loop"]] = row
    for loop, row in best.items():
        j = row["job"]
        met = row["speedup"] >= TARGET_SPEEDUP
        out.append(f"- Best micro configuration ({loop} loop): {j.precision}, compile {'on' if j.compile else 'off'}, "
                   f"{j.optimizer}, attention {j.attention}: {row['speedup']:.2f}× eager fp32 "
                   f"(target ≥ {TARGET_SPEEDUP}×) → {'met' if met else 'NOT met'}; same validation loss: see "
                   f"experiments/results/parity_*.md")
    return out


# "Fast by default": the auto defaults' tokens/s ≥ 3.0× eager fp32 on micro, in one run.
TARGET_AUTO_SPEEDUP = 3.0


def auto_checks(rows: list[dict[str, Any]], chosen: dict[str, Any]) -> list[str]:
    """The ``--auto`` run's line per model and loop: the auto configuration's speed-up over eager fp32."""
    out = []
    for row in rows:
        j = row["job"]
        if (j.precision, j.compile, j.attention, j.optimizer) != (chosen["precision"], chosen["compile"],
                                                                    chosen["attention"], chosen["optimizer"]):
            continue
        target = f" (target ≥ {TARGET_AUTO_SPEEDUP}×) → {'met' if row['speedup'] >= TARGET_AUTO_SPEEDUP else 'NOT met'}"
        out.append(f"- auto defaults on {j.model} ({row['loop']} loop): {j.precision}, compile "
                   f"{'on' if j.compile else 'off'}, attention {j.attention}, {j.optimizer} AdamW: "
                   f"{row['tokens_per_s']:,.0f} tokens/s = {row['speedup']:.2f}× eager fp32 "
                   f"({row['reference'].optimizer} AdamW)"
                   + (target if j.model == "micro" else ""))
        eager_same_optimizer = [r for r in rows if (r["job"].model, r["loop"], r["job"].precision, r["job"].compile,
                                                    r["job"].attention, r["job"].optimizer)
                                == (j.model, row["loop"], "32-true", False, "sdpa", j.optimizer) and r is not row]
        for eager in eager_same_optimizer:
            out.append(f"  - against eager fp32 with the same {j.optimizer} AdamW ({eager['tokens_per_s']:,.0f} "
                       f"tokens/s): {row['tokens_per_s'] / eager['tokens_per_s']:.2f}×")
    return out


def ceilings_table(c: Ceilings) -> str:
    return "\n".join([
        "| ceiling | size | value |",
        "|---|---|---:|",
        f"| matmul fp32 | {c.fp32.n}² (best of {c.fp32.repeats}) | {c.fp32.gflops:,.0f} GFLOP/s |",
        f"| matmul bf16 | {c.bf16.n}² (best of {c.bf16.repeats}) | {c.bf16.gflops:,.0f} GFLOP/s |",
        f"| memory read (fp32 sum) | {c.bandwidth_mib} MiB | {c.bandwidth_gbs:,.1f} GB/s |",
    ])


def errors(runs: list[Run]) -> list[str]:
    return [f"- {r.job.model} {r.job.precision} compile={'on' if r.job.compile else 'off'} {r.job.optimizer} "
            f"{r.job.attention} {r.job.loop}: {r.result['error']}" for r in runs if not r.ok]


CSV_JOB_FIELDS = [f.name for f in dataclasses.fields(Job)]
CSV_RESULT_FIELDS = ["params", "vocab_size", "context_length", "tokens_per_step", "tokens_per_s", "step_s_mean",
                     "step_s_median", "step_s_min", "step_s_max", "cpu_s_per_step", "first_step_s", "warmup_s",
                     "compile_s", "window_s", "flops_per_token", "achieved_gflops", "baseline_rss_mib", "peak_rss_mib",
                     "cuda_peak_mib", "torch_threads", "run_s", "error"]
# CSV names of result keys that would otherwise repeat a Job field's name
_RESULT_KEY = {"context_length": "context", "torch_threads": "threads"}


def write_csv(path: Path, runs: list[Run], ceilings: Ceilings, machine: dict[str, Any], command: str) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_JOB_FIELDS + CSV_RESULT_FIELDS + ["peak_gflops", "mfu_pct", "final_loss", "cpu",
                                                              "cpu_flags", "gpu", "torch", "lightning", "commit",
                                                              "command"])
        for r in runs:
            job = dataclasses.asdict(r.job)
            res = r.result
            mfu = f"{r.mfu(ceilings):.2f}" if r.ok else ""
            loss = f"{res['losses'][-1]:.4f}" if r.ok else ""
            writer.writerow([job[k] for k in CSV_JOB_FIELDS]
                            + [_fmt(res.get(_RESULT_KEY.get(k, k))) for k in CSV_RESULT_FIELDS]
                            + [f"{ceilings.peak_gflops(r.job.precision):.1f}", mfu, loss, machine["cpu"],
                               machine["cpu_flags"], machine["gpu"], machine["torch"], machine["lightning"],
                               machine["commit"], command])


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
