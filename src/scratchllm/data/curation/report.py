"""``report.json`` and ``report.md``: what every stage took in, let through and removed, and why.

Per stage: documents and bytes (UTF-8 of the text) in and out, documents removed per reason with a few
truncated examples, wall-clock seconds and MB/s. Token counts are exact for the tokenize stage; for earlier
stages they are estimated from bytes with the tokens-per-byte ratio of the kept text (tokenising text that is
then thrown away would cost as much as tokenising what is kept), and marked ``~``.

The arithmetic is checked before it is written: for every stage ``documents in = documents out + removed``, each
stage's input is the previous stage's output, and in all ``records read = documents kept + removed.jsonl lines``.
For ``read``, a record that could not be read is counted at its raw size; ``normalize`` changes bytes without
removing documents, so its bytes out are the normalised text.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scratchllm.data.curation.documents import Removal

MB = 1e6


@dataclass
class StageStats:
    name: str
    docs_in: int = 0
    docs_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    removed: Counter = field(default_factory=Counter)
    removed_bytes: Counter = field(default_factory=Counter)
    examples: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)
    tokens_out: int | None = None  # exact, tokenize stage only

    def remove(self, r: Removal, n_examples: int, example_chars: int) -> None:
        self.removed[r.reason] += 1
        self.removed_bytes[r.reason] += r.nbytes
        shown = self.examples.setdefault(r.reason, [])
        if len(shown) < n_examples:
            text = " ".join(r.text.split())
            ex = {"id": r.id, "text": text[:example_chars] + ("…" if len(text) > example_chars else "")}
            if r.detail:
                ex["detail"] = r.detail
            if r.duplicate_of is not None:
                ex["duplicate_of"] = r.duplicate_of
            shown.append(ex)

    @property
    def n_removed(self) -> int:
        return sum(self.removed.values())

    def to_json(self, tokens_per_byte: float | None) -> dict[str, Any]:
        def est(b: int) -> int | None:
            return None if tokens_per_byte is None else round(b * tokens_per_byte)

        out: dict[str, Any] = {
            "stage": self.name,
            "documents_in": self.docs_in,
            "documents_out": self.docs_out,
            "documents_removed": self.n_removed,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "bytes_removed": sum(self.removed_bytes.values()),
            "tokens_in": est(self.bytes_in),
            "tokens_out": self.tokens_out if self.tokens_out is not None else est(self.bytes_out),
            "tokens_estimated": self.tokens_out is None,
            "seconds": round(self.seconds, 3),
            "mb_per_s": round(self.bytes_in / MB / self.seconds, 2) if self.seconds > 0 else None,
            "removed": dict(self.removed.most_common()),
            "examples": self.examples,
        }
        if self.notes:
            out["notes"] = self.notes
        return out


def check_balance(stages: list[StageStats], removed_lines: int | None) -> list[str]:
    """Every way the counts could fail to add up (empty: they balance)."""
    problems = []
    for i, s in enumerate(stages):
        if s.docs_in != s.docs_out + s.n_removed:
            problems.append(f"{s.name}: {s.docs_in} in != {s.docs_out} out + {s.n_removed} removed")
        if i and s.docs_in != stages[i - 1].docs_out:
            problems.append(f"{s.name}: {s.docs_in} in != {stages[i - 1].name}'s {stages[i - 1].docs_out} out")
    total_removed = sum(s.n_removed for s in stages)
    if stages and stages[0].docs_in != stages[-1].docs_out + total_removed:
        problems.append(f"{stages[0].docs_in} records != {stages[-1].docs_out} kept + {total_removed} removed")
    if removed_lines is not None and removed_lines != total_removed:
        problems.append(f"removed.jsonl has {removed_lines} lines, the stages removed {total_removed}")
    return problems


def build_report(stages: list[StageStats], *, tokens_per_byte: float | None, removed_lines: int | None,
                 context: dict[str, Any]) -> dict[str, Any]:
    problems = check_balance(stages, removed_lines)
    first, last = stages[0], stages[-1]
    return {
        **context,
        "documents_in": first.docs_in,
        "documents_out": last.docs_out,
        "documents_removed": sum(s.n_removed for s in stages),
        "bytes_in": first.bytes_in,
        "bytes_out": last.bytes_out,
        "tokens_out": last.tokens_out,
        "tokens_per_byte": round(tokens_per_byte, 5) if tokens_per_byte else None,
        "balanced": not problems,
        "balance_problems": problems,
        "stages": [s.to_json(tokens_per_byte) for s in stages],
    }


def _num(v: Any, tilde: bool = False) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.2f}"
    return ("~" if tilde else "") + f"{v:,}"


def _mb(b: int) -> str:
    return f"{b / MB:,.2f}"


def render_markdown(report: dict[str, Any]) -> str:
    """A readable ``report.md``: the summary table, then each stage's reasons with examples."""
    lines = [f"# Data preparation report: {report.get('output', '')}", ""]
    lines += [f"- input: `{', '.join(report.get('input', []))}`",
              f"- tokenizer: `{report.get('tokenizer')}`, workers: {report.get('workers')}",
              f"- documents: {report['documents_in']:,} in, {report['documents_out']:,} kept, "
              f"{report['documents_removed']:,} removed "
              f"({'balanced' if report['balanced'] else 'DOES NOT BALANCE: ' + '; '.join(report['balance_problems'])})",
              f"- tokens written: {_num(report.get('tokens_out'))} "
              f"(train {_num(report.get('train_tokens'))}, val {_num(report.get('val_tokens'))})",
              f"- total time: {report.get('seconds', 0):.1f} s", ""]
    lines += ["| stage | docs in | removed | docs out | MB in | MB out | tokens in | tokens out | s | MB/s |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in report["stages"]:
        est = s["tokens_estimated"]
        lines.append(f"| {s['stage']} | {s['documents_in']:,} | {s['documents_removed']:,} | {s['documents_out']:,} | "
                     f"{_mb(s['bytes_in'])} | {_mb(s['bytes_out'])} | {_num(s['tokens_in'], True)} | "
                     f"{_num(s['tokens_out'], est)} | {s['seconds']:.2f} | {_num(s['mb_per_s'])} |")
    lines += ["", "Token counts marked ~ are estimated from bytes with the kept text's tokens per byte "
              f"({_num(report.get('tokens_per_byte'))}).", ""]
    for s in report["stages"]:
        if not s["removed"] and not s.get("notes"):
            continue
        lines += [f"## {s['stage']}", ""]
        for key, value in (s.get("notes") or {}).items():
            lines.append(f"- {key}: {value}")
        for reason, count in s["removed"].items():
            lines.append(f"- **{reason}**: {count:,} removed")
            for ex in s["examples"].get(reason, []):
                extra = "".join(f", {k}: {ex[k]}" for k in ("detail", "duplicate_of") if k in ex)
                text = ex["text"].replace("`", "'")
                lines.append(f"  - `{ex['id']}`{extra}" + (f": `{text}`" if text else ""))
        lines.append("")
    return "\n".join(lines)


def write_report(folder: Path, report: dict[str, Any]) -> None:
    (folder / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    (folder / "report.md").write_text(render_markdown(report), encoding="utf-8")
