"""Load test of ``python -m scratchllm.serve`` on loopback: N concurrent streaming clients for D seconds.

Each client (a thread with the official ``openai`` client) sends streaming completions back to back until the
time is up; we record every request's time to first token (from sending to the first text chunk: queueing in the
server included, since requests are served one at a time) and its tokens, and count errors. The report gives
TTFT p50/p95, requests, total tokens/s and errors, with the machine and the command, in
``experiments/results/serve_load_<date>[_<tag>].md``.

    .venv/bin/python experiments/bench_serve.py --ckpt logs/train/runs/<time>/checkpoints/last.ckpt \
        --clients 8 --seconds 60 --max-tokens 64          # on an otherwise idle machine
    .venv/bin/python experiments/bench_serve.py --ckpt <ckpt> --clients 2 --seconds 3 --out /tmp/x.md   # smoke
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench.machine import cpu_model  # noqa: E402
from serving_harness import running_server  # noqa: E402


def client_loop(client, stop_at: float, max_tokens: int, prompt: str, records: list, errors: list) -> None:
    while time.monotonic() < stop_at:
        sent = time.perf_counter()
        first, tokens = None, 0
        try:
            for chunk in client.completions.create(model="m", prompt=prompt, max_tokens=max_tokens, stream=True,
                                                   temperature=0.8):
                choice = chunk.choices[0]
                if first is None and choice.text:
                    first = time.perf_counter() - sent
                tokens += len(getattr(choice, "token_ids", None) or [])
        except Exception as err:  # noqa: BLE001 - counted and reported, the load goes on
            errors.append(repr(err))
            continue
        records.append((first if first is not None else time.perf_counter() - sent, tokens,
                        time.perf_counter() - sent))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))] if ordered else float("nan")


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--prompt", default="ROMEO:")
    parser.add_argument("--threads", default="1", help="the server's torch threads")
    parser.add_argument("--tag", default="")
    parser.add_argument("--out", default=None)
    parser.add_argument("--note", default="", help="a line for the report (e.g. what else ran on the machine)")
    args = parser.parse_args(argv)
    command = " ".join(["python experiments/bench_serve.py", *(sys.argv[1:] if argv is None else argv)])
    records: list[tuple[float, int, float]] = []
    errors: list[str] = []
    workdir = Path(os.environ.get("TMPDIR", "/tmp"))
    import openai

    with running_server(args.ckpt, workdir, f"threads={args.threads}", f"max_queue={args.clients}") as base:
        clients = [openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=300)
                   for _ in range(args.clients)]
        start = time.monotonic()
        stop_at = start + args.seconds
        workers = [threading.Thread(target=client_loop,
                                    args=(c, stop_at, args.max_tokens, args.prompt, records, errors))
                   for c in clients]
        for w in workers:
            w.start()
        while any(w.is_alive() for w in workers):
            time.sleep(1)
            print(f"\r{time.monotonic() - start:5.0f} s  {len(records)} requests  {len(errors)} errors",
                  end="", file=sys.stderr, flush=True)
        wall = time.monotonic() - start
    print(file=sys.stderr)
    ttft = [r[0] for r in records]
    tokens = sum(r[1] for r in records)
    rows = [
        ("clients × seconds", f"{args.clients} × {args.seconds:g} (wall {wall:.1f} s, the last requests finish)"),
        ("requests / errors", f"{len(records)} / {len(errors)}"),
        ("time to first token p50 / p95",
         f"{percentile(ttft, 0.5) * 1000:.0f} ms / {percentile(ttft, 0.95) * 1000:.0f} ms"),
        ("tokens generated", f"{tokens:,}"),
        ("tokens/s (all clients)", f"{tokens / wall:.1f}"),
        ("mean request time", f"{statistics.mean(r[2] for r in records):.2f} s" if records else "-"),
    ]
    lines = [f"# Serving load test ({date.today()})", "",
             f"`{command}`", "",
             f"Machine: {cpu_model()}, {os.cpu_count()} cores; server threads "
             f"{args.threads}; max_tokens {args.max_tokens}; checkpoint `{args.ckpt}`. Requests are served one at a "
             "time, so time to first token includes the wait for the requests ahead.", "",
             *([f"**Note:** {args.note}", ""] if args.note else []),
             "| measure | value |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows]]
    if errors:
        lines += ["", "Errors (first 5):", *[f"- `{e}`" for e in errors[:5]]]
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / \
        f"serve_load_{date.today()}{'_' + args.tag if args.tag else ''}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return out


if __name__ == "__main__":
    main()
