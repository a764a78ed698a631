"""Decode speed: ours (KV cache / no cache / bf16 weights) beside transformers' ``generate`` on the same weights,
and beside the limit that memory bandwidth puts on it.

Why a bandwidth limit. Decoding one token at batch 1 multiplies every weight matrix by a single vector: each
weight is read once and used for one multiply-add. The CPU can do far more multiply-adds per second than memory
can deliver weights, so the time per token is bounded below by (bytes of weights read per token) / (memory read
bandwidth). We measure the bandwidth with a large tensor sum and report each measured rate as a % of that limit.
Weights read per token: every matrix except the position embedding (one row per token) and, when untied, the
token embedding (one row); a tied embedding *is* the output head and is read in full. The KV cache is read too
(not counted: at 1024 positions it adds ~15% to GPT-2 small's fp32 bytes).

The bandwidth is noisy on a shared machine (the same probe reads 23-32 GB/s minutes apart), so it is probed at
the start, next to every bf16 run and at the end, and the limits use the *highest* reading (the strictest limit).
The row "linears only" times just the one-row matrix products of a decode step, in the order a step runs them,
through the same kernels and packed weights, with nothing in between: the floor any decode loop built on these
kernels can reach. bf16 runs happen inside ``decode_session`` with the weights packed by the warm-up (a one-off
cost, like loading; its time is in the note).

Random weights, batch 1, a 4-token prompt, greedy decoding, ``torch.inference_mode``. The micro preset uses a
65-id vocabulary. Each preset's context_length is raised to prompt + new tokens where it is shorter, so no run
slides its window (transformers cannot go past its position table).

Full run (on a quiet machine; about 5-10 minutes on 2 cores)::

    python experiments/bench_generate.py

Smoke run (seconds): ``python experiments/bench_generate.py --quick``. The no-cache path at 1024 new tokens
on gpt2-124m takes minutes; by default it is *estimated*: one uncached step (a full forward over the window) is
timed at ``--nocache-samples`` window lengths spread over the run, and the step times are integrated over every
window length with the trapezoid rule. ``--nocache full`` runs it completely instead. The output says which.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import platform
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.ceilings import read_bandwidth_gbs
from bench.machine import cpu_model
from bench.timing import per_call
from scratchllm.generation import decode_session, generate
from scratchllm.generation.fastpath import DecodeShortcuts
from scratchllm.model import GPT, load_preset

PROMPT = [464, 2068, 7586, 21831]  # 4 ids, valid in both vocabularies after `% vocab_size`
RESULTS = Path(__file__).resolve().parent / "results"


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def weight_bytes(model: GPT, bytes_per_weight: int) -> int:
    """Bytes of weights read to decode one token (module doc)."""
    skip = {id(model.pos_emb.weight)} if model.pos_emb is not None else set()
    if model.lm_head.weight is not model.tok_emb.weight:
        skip.add(id(model.tok_emb.weight))
    return sum(p.numel() for p in model.parameters() if id(p) not in skip) * bytes_per_weight


# ---------------------------------------------------------------------------------------------- measures
@dataclass
class Row:
    preset: str
    new_tokens: int
    engine: str
    dtype: str
    cache: str
    tokens_per_s: float
    seconds: float
    how: str
    bytes_per_token: int  # weights read per decoded token
    note: str = ""
    bandwidth_gbs: float = 0.0  # set once every probe of the run is in: the highest one

    @property
    def limit_tokens_per_s(self) -> float:
        return self.bandwidth_gbs * 1e9 / self.bytes_per_token

    @property
    def pct_of_limit(self) -> float:
        return 100 * self.tokens_per_s / self.limit_tokens_per_s


def time_ours(model: GPT, n: int, use_cache: bool, repeats: int = 1) -> tuple[float, list[int], float]:
    """Best wall time of ``repeats`` greedy generations of n tokens (other load only ever slows a run down), the
    tokens, and the warm-up's time (which packs the bf16 weights for the whole ``decode_session``)."""
    with decode_session(model):
        warmup = _timed(lambda: generate(model, PROMPT_FOR(model), 2, temperature=0, use_cache=use_cache))
        best, out = float("inf"), []
        for _ in range(repeats):
            start = time.perf_counter()
            out = generate(model, PROMPT_FOR(model), n, temperature=0, use_cache=use_cache)
            best = min(best, time.perf_counter() - start)
    return best, out, warmup  # type: ignore[return-value]


def time_linears_only(model: GPT, steps: int = 20) -> float:
    """Seconds per token for the one-row matrix products of one decode step alone (module doc): every
    ``nn.Linear`` in the order a step calls it (``modules()`` lists them so for a GPT), each fed one row, through
    the decode shortcuts' kernels and packed weights."""
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    dtype = model.lm_head.weight.dtype
    inputs = {m: torch.randn(1, 1, m.in_features, dtype=dtype) for m in linears}
    with torch.inference_mode(), DecodeShortcuts(model):  # the warm-up call packs the weights
        return per_call(lambda: [m(inputs[m]) for _ in range(steps) for m in linears], steps, repeats=3)


def PROMPT_FOR(model: GPT) -> list[int]:  # noqa: N802 - reads like the constant it stands for
    return [t % model.config.vocab_size for t in PROMPT]


def estimate_nocache(model: GPT, n: int, samples: int) -> float:
    """Seconds for n uncached tokens: one step = a full forward over the window, timed at `samples` window
    lengths from the prompt's to the last one's and integrated over all n window lengths (trapezoid rule)."""
    p = len(PROMPT)
    lengths = sorted({round(p + i * (n - 1) / max(samples - 1, 1)) for i in range(samples)})
    base = PROMPT_FOR(model)
    step: dict[int, float] = {}
    for length in lengths:
        prompt = (base * (length // len(base) + 1))[:length]
        generate(model, prompt, 1, temperature=0, use_cache=False)  # warm-up at this shape
        step[length] = min(_timed(lambda: generate(model, prompt, 1, temperature=0, use_cache=False)) for _ in range(2))
    total = 0.0
    for a, b in zip(lengths, lengths[1:]):  # each window length a..b-1 once, linear in between
        total += sum(step[a] + (step[b] - step[a]) * (t - a) / (b - a) for t in range(a, b))
    return total + step[lengths[-1]]


def time_hf(model: GPT, n: int, attn: str, workdir: Path, repeats: int = 1) -> tuple[float, list[int]]:
    import transformers
    from transformers import AutoModelForCausalLM

    from scratchllm.interop.hf import save_hf

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    folder = save_hf(model, workdir / f"hf-{model.config.name}")
    hf = AutoModelForCausalLM.from_pretrained(folder, attn_implementation=attn, dtype=torch.float32).eval()
    hf.generation_config.eos_token_id = None  # random weights: never stop early
    hf.generation_config.pad_token_id = 0
    ids = torch.tensor([PROMPT_FOR(model)])
    kwargs = dict(do_sample=False, use_cache=True, num_beams=1)
    with torch.inference_mode():
        hf.generate(ids, max_new_tokens=2, **kwargs)
        seconds = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            out = hf.generate(ids, max_new_tokens=n, min_new_tokens=n, **kwargs)
            seconds = min(seconds, time.perf_counter() - start)
    new = out[0, ids.shape[1] :].tolist()
    assert len(new) == n, f"transformers returned {len(new)} tokens, wanted {n}"
    return seconds, new


def bench_preset(name: str, lengths: list[int], args: argparse.Namespace, probes: list[float],
                 workdir: Path) -> list[Row]:
    """The rows of one preset; appends the bandwidth probes it takes (one next to each bf16 run) to ``probes``."""
    rows: list[Row] = []
    for n in lengths:
        overrides = {"vocab_size": 65} if name == "micro" else {}
        cfg = load_preset(name, **overrides)
        if cfg.context_length < len(PROMPT) + n:
            cfg = cfg.replace(context_length=len(PROMPT) + n)
        torch.manual_seed(0)
        model = GPT(cfg).eval()
        bytes32, bytes16 = weight_bytes(model, 4), weight_bytes(model, 2)
        print(f"[{name} n={n}] fp32 cached …", file=sys.stderr, flush=True)
        s, ours, _ = time_ours(model, n, use_cache=True, repeats=args.repeats)
        rows.append(Row(name, n, "scratchllm", "float32", "yes", n / s, s, "measured", bytes32))

        print(f"[{name} n={n}] fp32 no cache …", file=sys.stderr, flush=True)
        if args.nocache == "full" or n <= args.nocache_full_up_to:
            s, uncached, _ = time_ours(model, n, use_cache=False)
            how, note = "measured", "" if uncached == ours else "tokens differ from the cached run"
        else:
            s = estimate_nocache(model, n, args.nocache_samples)
            how, note = f"estimated ({args.nocache_samples} sampled window lengths)", ""
        rows.append(Row(name, n, "scratchllm", "float32", "no", n / s, s, how, bytes32, note))

        if not args.no_hf:
            print(f"[{name} n={n}] transformers fp32 …", file=sys.stderr, flush=True)
            s, theirs = time_hf(model, n, args.hf_attn, workdir, args.repeats)
            same = sum(a == b for a, b in zip(ours, theirs))
            rows.append(Row(name, n, f"transformers ({args.hf_attn})", "float32", "yes", n / s, s, "measured",
                            bytes32, f"{same}/{n} tokens equal ours"))

        print(f"[{name} n={n}] bf16 cached …", file=sys.stderr, flush=True)
        model16 = model.to(torch.bfloat16)
        probes.append(read_bandwidth_gbs(args.bandwidth_mib))
        s, ours16, warmup = time_ours(model16, n, use_cache=True, repeats=args.repeats)
        rows.append(Row(name, n, "scratchllm", "bfloat16", "yes", n / s, s, "measured", bytes16,
                        f"probe next to it {probes[-1]:.1f} GB/s; warm-up incl. packing {warmup:.2f} s"))
        if n == max(lengths):
            per_token = time_linears_only(model16)
            rows.append(Row(name, n, "linears only (floor)", "bfloat16", "-", 1 / per_token, per_token,
                            "measured, 20 steps", bytes16, "one-row matrix products of a step, nothing else"))
        if not args.no_quantized:
            rows += quantized_rows(model16, name, n, ours16, args)
        del model, model16
    return rows


def quantized_bytes(model: GPT) -> int:
    """Weights read per decoded token by a quantized model (codes and scales; module doc's rule)."""
    from scratchllm.quantization import weight_bytes as all_weight_bytes

    pos = [] if model.pos_emb is None else [*model.pos_emb.parameters(), *model.pos_emb.buffers()]
    return all_weight_bytes(model) - sum(t.numel() * t.element_size() for t in pos)  # one row of it per token


def quantized_rows(model16: GPT, name: str, n: int, ours16: list[int], args: argparse.Namespace) -> list[Row]:
    """int8 (our kernel where this CPU runs it, then torch's ``_weight_int8pack_mm`` on the same weights) and int4
    group 64, quantized from the bf16 model, computing in bf16 as ``generate quantize=…`` does."""
    import contextlib
    import copy

    from bench.int8_kernel import torch_int8_kernel
    from scratchllm.quantization import QuantConfig, quantize_model
    from scratchllm.quantization.native import status

    rows = []
    for method in ("int8", "int4"):
        model = copy.deepcopy(model16).float()
        quantize_model(model, QuantConfig(method) if method == "int8" else QuantConfig("int4", 64))
        model.to(torch.bfloat16)
        # torch's kernel on the same weights, in this process: the in-process A/B
        kernels = [("ours", contextlib.nullcontext), ("torch", torch_int8_kernel)] \
            if method == "int8" and status()[0] is not None else [("torch", contextlib.nullcontext)]
        for kernel, using in kernels:
            label = f"{method} ({kernel} kernel)" if method == "int8" else "int4 g64"
            print(f"[{name} n={n}] {label} cached …", file=sys.stderr, flush=True)
            with using():
                s, out, _ = time_ours(model, n, use_cache=True, repeats=args.repeats)
            same = sum(a == b for a, b in zip(out, ours16))
            rows.append(Row(name, n, "scratchllm", label, "yes", n / s, s, "measured", quantized_bytes(model),
                            f"{same}/{n} tokens equal bf16's"))
        del model
    return rows


# ---------------------------------------------------------------------------------------------- report
COLUMNS = ["preset", "new tokens", "engine", "weights", "KV cache", "tokens/s", "seconds", "limit tokens/s",
           "% of limit", "how", "note"]


def as_cells(row: Row) -> list[str]:
    return [row.preset, str(row.new_tokens), row.engine, row.dtype, row.cache, f"{row.tokens_per_s:.1f}",
            f"{row.seconds:.2f}", f"{row.limit_tokens_per_s:.1f}", f"{row.pct_of_limit:.0f}%", row.how, row.note]


def markdown_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(as_cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def checks(rows: list[Row]) -> list[str]:
    """The issue's targets, where this run measured what they need."""
    def find(preset: str, n: int, engine: str, dtype: str, cache: str) -> Row | None:
        return next((r for r in rows if (r.preset, r.new_tokens, r.engine.split(" ")[0], r.dtype, r.cache)
                     == (preset, n, engine, dtype, cache)), None)

    out = []
    big = max((r.new_tokens for r in rows if r.preset == "gpt2-124m"), default=None)
    if big is None:
        return out
    cached, uncached = find("gpt2-124m", big, "scratchllm", "float32", "yes"), find("gpt2-124m", big, "scratchllm", "float32", "no")
    hf, bf16 = find("gpt2-124m", big, "transformers", "float32", "yes"), find("gpt2-124m", big, "scratchllm", "bfloat16", "yes")
    if cached and uncached:
        ratio = cached.tokens_per_s / uncached.tokens_per_s
        out.append(f"- cache vs no cache, gpt2-124m, {big} new tokens: {ratio:.1f}x (target >= 5x at 1024; "
                   f"no-cache {uncached.how}) -> {'met' if ratio >= 5 else 'NOT met'}")
    if cached and hf:
        ratio = cached.tokens_per_s / hf.tokens_per_s
        out.append(f"- ours fp32 cached vs transformers, gpt2-124m, {big} new tokens: {ratio:.2f}x "
                   f"(target >= 1) -> {'met' if ratio >= 1 else 'NOT met'}")
    if bf16:
        out.append(f"- bf16 cached decode, gpt2-124m, {big} new tokens: {bf16.pct_of_limit:.0f}% of the bandwidth "
                   f"limit (target >= 80%) -> {'met' if bf16.pct_of_limit >= 80 else 'NOT met'}")
    for label in ("int8 (ours kernel)", "int8 (torch kernel)", "int4 g64"):
        q = find("gpt2-124m", big, "scratchllm", label, "yes")
        if bf16 and q:
            ratio = q.tokens_per_s / bf16.tokens_per_s
            target = f" (target >= 1.5x) -> {'met' if ratio >= 1.5 else 'NOT met'}" if label.startswith("int8") else ""
            out.append(f"- {label} decode vs bf16, gpt2-124m, {big} new tokens: {ratio:.2f}x, "
                       f"{q.pct_of_limit:.0f}% of its bandwidth limit{target}")
    floor = next((r for r in rows if r.preset == "gpt2-124m" and r.engine.startswith("linears only")), None)
    if bf16 and floor:
        out.append(f"- its floor, the one-row matrix products alone: {floor.pct_of_limit:.0f}% of the limit; the "
                   f"decode loop reaches {100 * bf16.tokens_per_s / floor.tokens_per_s:.0f}% of the floor")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 16 and 32 new tokens, small buffers")
    parser.add_argument("--presets", nargs="+", default=["micro", "gpt2-124m"])
    parser.add_argument("--new-tokens", nargs="+", type=int, default=None, help="default: 128 1024")
    parser.add_argument("--repeats", type=int, default=1, help="time each cached run this often, keep the best")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, one per core)")
    parser.add_argument("--nocache", choices=["estimate", "full"], default="estimate")
    parser.add_argument("--nocache-full-up-to", type=int, default=128,
                        help="run the no-cache path fully up to this many new tokens, estimate beyond")
    parser.add_argument("--nocache-samples", type=int, default=9)
    parser.add_argument("--hf-attn", choices=["sdpa", "eager"], default="sdpa")
    parser.add_argument("--no-hf", action="store_true", help="skip transformers")
    parser.add_argument("--no-quantized", action="store_true", help="skip the int8 / int4 rows")
    parser.add_argument("--bandwidth-mib", type=int, default=2048, help="size of the bandwidth test tensor")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.new_tokens = args.new_tokens or [16, 32]
        args.nocache_samples = min(args.nocache_samples, 3)
        args.nocache_full_up_to = min(args.nocache_full_up_to, 16)
        args.bandwidth_mib = min(args.bandwidth_mib, 512)
    if args.nocache_samples < 2:  # one sampled length cannot be integrated over the run: it counted one step for all
        parser.error("--nocache-samples must be >= 2 (the first and last window lengths at least); "
                     "use --nocache-full-up-to to run the no-cache path fully instead")
    lengths = args.new_tokens or [128, 1024]
    if args.threads:
        torch.set_num_threads(args.threads)

    load_before = os.getloadavg()
    probes = [read_bandwidth_gbs(args.bandwidth_mib)]
    print(f"memory read bandwidth: {probes[0]:.1f} GB/s", file=sys.stderr, flush=True)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            rows += bench_preset(preset, lengths, args, probes, Path(tmp))
    probes.append(read_bandwidth_gbs(args.bandwidth_mib))
    load_after = os.getloadavg()
    bandwidth = max(probes)
    for row in rows:
        row.bandwidth_gbs = bandwidth

    import transformers

    command = "python " + " ".join(shlex.quote(a) for a in ["experiments/bench_generate.py", *sys.argv[1:]])
    header = [
        f"# Decode speed ({'smoke run' if args.quick else 'full run'}, {dt.datetime.now():%Y-%m-%d %H:%M})",
        "",
        f"- command: `{command}`",
        f"- machine: {cpu_model()}, {os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}",
        f"- versions: python {platform.python_version()}, torch {torch.__version__}, transformers "
        f"{transformers.__version__}",
        f"- memory read bandwidth (sum of a {args.bandwidth_mib} MiB fp32 tensor, best of 5), probed {len(probes)} "
        f"times (start, next to each bf16 run, end): {', '.join(f'{p:.1f}' for p in probes)} GB/s; limits below "
        f"use the highest, {bandwidth:.1f} GB/s",
        f"- load average (1 min) before / after: {load_before[0]:.2f} / {load_after[0]:.2f} "
        f"(other processes on the cores make every figure slower)",
        "- batch 1, 4-token prompt, greedy, random weights (micro: vocab 65); limit tokens/s = bandwidth / bytes of "
        "weights read per token; transformers: AutoModelForCausalLM.from_pretrained on our save_hf export, "
        f"attn_implementation={args.hf_attn}, use_cache=True; cached runs: best of {args.repeats}",
        "",
    ]
    table = markdown_table(rows)
    report = "\n".join(header) + "\n" + table + "\n\n" + "\n".join(checks(rows)) + "\n"
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"generate_{dt.date.today():%Y-%m-%d}" + ("_quick" if args.quick else "")
    (args.out / f"{stem}.md").write_text(report)
    with open(args.out / f"{stem}.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["preset", "new_tokens", "engine", "dtype", "kv_cache", "tokens_per_s", "seconds",
                         "limit_tokens_per_s", "pct_of_limit", "how", "note", "bandwidth_gbs", "cpu", "threads",
                         "torch", "transformers", "command"])
        for r in rows:
            writer.writerow([r.preset, r.new_tokens, r.engine, r.dtype, r.cache, f"{r.tokens_per_s:.2f}",
                             f"{r.seconds:.3f}", f"{r.limit_tokens_per_s:.2f}", f"{r.pct_of_limit:.1f}", r.how, r.note,
                             f"{bandwidth:.2f}", cpu_model(), torch.get_num_threads(), torch.__version__,
                             transformers.__version__, command])
    print(f"wrote {args.out / stem}.md and .csv", file=sys.stderr)


if __name__ == "__main__":
    main()
