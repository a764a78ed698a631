"""Why bf16 decode stops short of the memory-bandwidth limit: what one matrix-vector product costs by size.

Decoding GPT-2 small streams 49 weight matrices per token, 1.2 to 77 MB each (in bf16). The limit in
``bench_generate.py`` divides the bytes by the rate of one long read (the sum of a 2 GiB tensor). This script
times products of ``rows × 768`` bf16 matrices of growing size through the kernel decode uses (oneDNN's packed
``_linear_pointwise`` with one input row), and beside it a plain read of the same bytes (a float32 ``sum`` over the
matrix's memory), each cycled over enough distinct copies (~600 MB) that nothing is served from cache. A straight
line through time per call against bytes gives a fixed cost per call (the intercept) and a streaming rate (the
slope): a small matrix cannot be read at the long-stream rate because every call starts the stream afresh.
Run with torch's threads (one per core) and with one thread; the cost of the call alone is timed on an 8-row
matrix that stays in cache.

    python experiments/bench_matvec_stream.py            # ~1 minute on 2 cores; writes results/matvec_stream_<date>.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import sys
from pathlib import Path

import torch

from bench.ceilings import read_bandwidth_gbs
from bench.machine import cpu_model
from bench.timing import per_call

RESULTS = Path(__file__).resolve().parent / "results"
ROWS = (768, 2304, 3072, 6144, 12288, 50304)  # GPT-2 small: attn.proj, qkv, mlp.fc, …, lm_head (all × 768)
FIT_UP_TO = 20e6  # bytes: the sizes a transformer block's matrices have; the head is reported, not fitted


def fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares line t = a + bytes / rate: returns (a in seconds, rate in bytes/s)."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    slope = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
    return my - slope * mx, 1 / slope


def call_overhead() -> float:
    """Seconds per packed product of an 8×768 matrix that stays in cache: the call alone, no memory stream."""
    x = torch.randn(1, 768).to(torch.bfloat16)
    packed = torch.ops.mkldnn._reorder_linear_weight(torch.randn(8, 768).to(torch.bfloat16), 1)
    with torch.inference_mode():
        return per_call(lambda: [torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")
                                 for _ in range(1000)], 1000)


def measure(threads: int, pool_mb: float) -> list[tuple[int, float, float]]:
    """(bytes, packed product seconds, plain read seconds) per matrix size."""
    torch.set_num_threads(threads)
    x = torch.randn(1, 768).to(torch.bfloat16)
    out = []
    with torch.inference_mode():
        for rows in ROWS:
            nbytes = rows * 768 * 2
            copies = max(2, int(pool_mb * 1e6 / nbytes))
            weights = [torch.randn(rows, 768).to(torch.bfloat16) for _ in range(copies)]
            packed = [torch.ops.mkldnn._reorder_linear_weight(w, 1) for w in weights]
            product = per_call(lambda: [torch.ops.mkldnn._linear_pointwise(x, p, None, "none", [], "")
                                        for p in packed], copies)
            read = per_call(lambda: [w.view(torch.float32).sum() for w in weights], copies)
            out.append((nbytes, product, read))
            del weights, packed
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool-mb", type=float, default=600, help="distinct copies cycled per size")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    default_threads = torch.get_num_threads()
    lines = []
    probe = read_bandwidth_gbs(2048)
    for threads in sorted({default_threads, 1}, reverse=True):
        rows = measure(threads, args.pool_mb)
        lines += [f"### {threads} thread{'s' if threads > 1 else ''}", "",
                  "| matrix | MB | packed product µs | GB/s | plain read µs | GB/s |", "|---|---|---|---|---|---|"]
        for (nbytes, product, read), r in zip(rows, ROWS):
            lines.append(f"| {r}×768 | {nbytes / 1e6:.2f} | {product * 1e6:.1f} | {nbytes / product / 1e9:.1f} | "
                         f"{read * 1e6:.1f} | {nbytes / read / 1e9:.1f} |")
        block = [row for row in rows if row[0] <= FIT_UP_TO]
        (a_p, rate_p), (a_r, rate_r) = fit([(b, p) for b, p, _ in block]), fit([(b, r) for b, _, r in block])
        lines += ["", f"- fit t = fixed + bytes / rate over the block matrices (≤ {FIT_UP_TO / 1e6:.0f} MB; the "
                      f"77 MB head alone would set the line): packed product fixed {a_p * 1e6:.0f} µs, rate "
                      f"{rate_p / 1e9:.1f} GB/s; plain read fixed {a_r * 1e6:.0f} µs, rate {rate_r / 1e9:.1f} GB/s",
                  f"- the call alone (8×768 matrix, in cache): {call_overhead() * 1e6:.1f} µs per product", ""]
    torch.set_num_threads(default_threads)
    probe_after = read_bandwidth_gbs(2048)
    command = "python " + " ".join(shlex.quote(a) for a in ["experiments/bench_matvec_stream.py", *sys.argv[1:]])
    report = "\n".join([
        f"# One-row bf16 products by matrix size ({dt.datetime.now():%Y-%m-%d %H:%M})", "",
        f"- command: `{command}`",
        f"- machine: {cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}",
        f"- long-read probe (sum of a 2 GiB fp32 tensor, {default_threads} threads): {probe:.1f} GB/s before, "
        f"{probe_after:.1f} GB/s after",
        f"- each size cycled over ~{args.pool_mb:.0f} MB of distinct copies; best of 5 passes", "",
        *lines,
    ])
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"matvec_stream_{dt.date.today():%Y-%m-%d}.md"
    path.write_text(report + "\n")
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
