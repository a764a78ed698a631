"""Why a bf16 decode step attends in float32 on CPU (``model.attention.decode_in_float32``), measured.

One decode step of GPT-2 small attends one query per head (12 heads of 64) over every cached position, in each of
its 12 layers. Part 1 times that attention alone, for caches of 128 to 2,048 positions: torch's bf16 kernels
(the model's own SDPA and explicit ``q @ kᵀ → mask → softmax → @ v`` methods) against the same call after casting
q, k and v to float32, and against a cache kept in float32 (no cast; twice the cache memory). Like a real step it
cycles over 12 layers' caches, each allocated at its full length and viewed up to L positions, as ``KVCache``
does. All rows run interleaved, round after round, and each keeps its best round (other load only ever slows a
round down).

Part 2 times whole decode steps of GPT-2 small (random weights, bf16 and int8 weights computing in bf16) after a
prompt of P tokens, with the float32 attention on and off in the same process (``decode_in_float32`` patched to
say no), interleaved: milliseconds per new token = (time of 24 new tokens − time of 1) / 23.

    python experiments/bench_decode_attention.py      # ~1 minute on 2 cores; writes results/decode_attention_<date>.md
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import shlex
import sys
import time
from pathlib import Path

import torch

import scratchllm.model.attention as attention
from bench.machine import cpu_model
from bench.timing import per_call_interleaved
from scratchllm.generation import decode_session, generate
from scratchllm.model import GPT, ModelConfig, load_preset

RESULTS = Path(__file__).resolve().parent / "results"
HEADS, HEAD_DIM, LAYERS = 12, 64, 12


def attention_rows(lengths: list[int], rounds: int, calls: int) -> list[list[str]]:
    """Microseconds per layer for one query over L cached positions, for each way of computing it: the model's own
    ``_sdpa`` and ``_explicit`` (a GPT-2-small ``CausalSelfAttention``), fed bf16 or cast to float32 as its
    ``forward`` does when ``decode_in_float32`` holds."""
    f32 = torch.float32
    module = attention.CausalSelfAttention(ModelConfig(vocab_size=64, n_layer=1, n_head=HEADS,
                                                       n_embd=HEADS * HEAD_DIM)).eval()

    def cast(run):
        return lambda q, k, v: run(q.to(f32), k.to(f32), v.to(f32)).to(q.dtype)

    ways = {  # name → (attention, dtype of the cache it reads)
        "SDPA, bf16 (torch as is)": (module._sdpa, torch.bfloat16),
        "SDPA, cast to float32 (ours)": (cast(module._sdpa), torch.bfloat16),
        "SDPA, float32 cache": (module._sdpa, f32),
        "explicit, bf16": (module._explicit, torch.bfloat16),
        "explicit, cast to float32 (ours)": (cast(module._explicit), torch.bfloat16),
    }
    rows = []
    for length in lengths:
        caches = {dtype: [(torch.randn(1, HEADS, length + 64, HEAD_DIM, dtype=dtype)[:, :, :length],
                           torch.randn(1, HEADS, length + 64, HEAD_DIM, dtype=dtype)[:, :, :length])
                          for _ in range(LAYERS)]
                  for dtype in (torch.bfloat16, f32)}
        q = {dtype: torch.randn(1, HEADS, 1, HEAD_DIM, dtype=dtype) for dtype in caches}

        def cycle(run, dtype):  # ``calls`` layers' attention, cycling over the 12 caches like a real step
            def calls_in_a_row() -> None:
                for i in range(calls):  # each result dropped at once, as a decode step drops it
                    run(q[dtype], *caches[dtype][i % LAYERS])
            return calls_in_a_row

        with torch.inference_mode():
            best = per_call_interleaved({name: cycle(run, dtype) for name, (run, dtype) in ways.items()},
                                        calls, rounds)
        base = best["SDPA, bf16 (torch as is)"]
        rows += [[str(length), name, f"{s * 1e6:.0f}", f"{base / s:.2f}×"] for name, s in best.items()]
    return rows


def ms_per_token(model: GPT, prompt_len: int, new: int = 24) -> float:
    prompt = [i % model.config.vocab_size for i in range(prompt_len)]
    start = time.perf_counter()
    generate(model, prompt, new, temperature=0)
    many = time.perf_counter() - start
    start = time.perf_counter()
    generate(model, prompt, 1, temperature=0)
    return (many - (time.perf_counter() - start)) / (new - 1) * 1e3


@contextlib.contextmanager
def bf16_attention():
    """The code before decode_in_float32: every step attends in the model's dtype."""
    original = attention.decode_in_float32
    attention.decode_in_float32 = lambda q: False
    try:
        yield
    finally:
        attention.decode_in_float32 = original


def decode_rows(prompts: list[int], rounds: int) -> list[list[str]]:
    from scratchllm.quantization import QuantConfig, quantize_model

    torch.manual_seed(0)
    cfg = load_preset("gpt2-124m", context_length=max(prompts) + 32)
    bf16 = GPT(cfg).eval().to(torch.bfloat16)
    int8 = copy.deepcopy(bf16).float()
    quantize_model(int8, QuantConfig("int8"))
    int8.to(torch.bfloat16)
    rows = []
    for label, model in (("bf16", bf16), ("int8 (bf16 compute)", int8)):
        with decode_session(model):
            generate(model, [1, 2], 2, temperature=0)  # packs the weights once
            for prompt_len in prompts:
                best = {"bf16 attention": float("inf"), "float32 attention": float("inf")}
                for _ in range(rounds):
                    with bf16_attention():
                        best["bf16 attention"] = min(best["bf16 attention"], ms_per_token(model, prompt_len))
                    best["float32 attention"] = min(best["float32 attention"], ms_per_token(model, prompt_len))
                before, after = best["bf16 attention"], best["float32 attention"]
                rows.append([label, str(prompt_len), f"{before:.2f}", f"{after:.2f}", f"{before / after:.2f}×"])
                print(f"  {label} prompt {prompt_len}: {before:.2f} → {after:.2f} ms/token", file=sys.stderr, flush=True)
    return rows


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512, 1024, 2048])
    parser.add_argument("--prompts", type=int, nargs="+", default=[8, 512, 1000])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=240)
    parser.add_argument("--out", type=Path, default=RESULTS / f"decode_attention_{dt.date.today()}.md")
    args = parser.parse_args()
    command = "python experiments/bench_decode_attention.py " + shlex.join(sys.argv[1:])
    print("part 1: attention alone …", file=sys.stderr, flush=True)
    part1 = attention_rows(args.lengths, args.rounds, args.calls)
    print("part 2: whole decode steps …", file=sys.stderr, flush=True)
    part2 = decode_rows(args.prompts, max(2, args.rounds // 2))
    text = "\n\n".join([
        f"# One decode step's attention on CPU: bf16 kernels vs a cast to float32 ({dt.date.today()})",
        f"Machine: {cpu_model()}, torch {torch.__version__}, {torch.get_num_threads()} threads. Command:\n\n"
        f"    {command.strip()}",
        "## Part 1: attention alone, one query, 12 heads × 64, µs per layer (best of interleaved rounds)",
        table(["cached positions", "how", "µs / layer", "speed vs bf16 SDPA"], part1),
        "## Part 2: whole decode steps of gpt2-124m (random weights), ms per new token after a prompt",
        table(["weights", "prompt tokens", "bf16 attention", "float32 attention", "speed-up"], part2),
    ]) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"written: {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
