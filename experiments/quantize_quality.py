"""Quantization quality on *trained* models: held-out perplexity, greedy continuations and weight bytes per method.

Random weights say nothing about quantization error (their logits are flat, any rounding barely moves them), so
each ``--run`` names a trained checkpoint and the text it was not trained on. For every method the float32 model
is loaded again, converted, and scored on the same held-out tokens (a paired comparison: the change in perplexity
is measured far more precisely than the perplexity itself), then continues the same prompt greedily for
``--new-tokens`` tokens; "same" counts the tokens before its first difference from the float32 continuation.

Methods: ours (``scratchllm.quantization``: int8 per channel; int4 group 32/64/128, asymmetric and symmetric) and,
when installed (benchmark-only dependencies, not the product's), torchao 0.18's int8 weight-only and
bitsandbytes 0.50's LLM.int8 (``Linear8bitLt``, threshold 6) and nf4 (``Linear4bit``, block 64) on the CPU. The
libraries convert ``nn.Linear`` layers only, so their token embedding stays float (for a tied model the head and
the embedding become two matrices); ours quantizes the embedding too (module doc of quantization/model.py).

Weight bytes: every tensor the converted model holds, each storage once, integer/packed tensors at their own size
and every float tensor counted at 2 bytes per number (as bf16, what our file stores the few float tensors in), so
the column compares formats, not the float32 leftovers each library keeps in memory.

One token at a time (``--decode-tokens``, 4,096 by default): the first tokens' windows are scored again through
the KV cache one token at a time, the path ``generate`` takes, where int8 layers run their decode kernel (ours
where the CPU has AVX-512 VNNI, which rounds activations to 15-bit integers; the int8 method is repeated through
torch's kernel), and against the batched pass on the same tokens: what the decode path changes.

``--speed`` adds decode tokens/s (batch 1, KV cache, ``--speed-tokens`` tokens, this process's threads): only
meaningful on an idle machine; without it the column reads "—".

Example (the shape of experiments/results/quantize_quality_2026-12-03.md's command)::

    python experiments/quantize_quality.py \\
        --run char-plays-nano ref/last.ckpt plays \\
        --run char-tinyshakespeare-micro micro/last.ckpt tinyshakespeare=data/tinyshakespeare.txt \\
        --out experiments/results/quantize_quality_2026-12-03.md
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from bench.int8_kernel import torch_int8_kernel  # experiments/ is on the path: this file runs as a script
from bench.machine import cpu_model

OURS = [("int8", {}), *[("int4", {"group_size": g, "symmetric": s}) for s in (False, True) for g in (32, 64, 128)]]


@dataclass
class Row:
    method: str
    nll: float
    bytes: int
    tokens: list[int]
    tok_per_s: float | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------- held-out text
def held_out_text(spec: str) -> str:
    """``plays`` (the play-wise validation split), ``tinyshakespeare=<file>`` (its last 10%), or a text file."""
    from scratchllm.data import ShakespearePlays, TinyShakespeare

    if spec == "plays":
        return "\n\n".join(ShakespearePlays().splits()["val"])
    if spec.startswith("tinyshakespeare="):
        return TinyShakespeare(path=spec.split("=", 1)[1]).splits()["val"][0]
    return Path(spec).read_text(encoding="utf-8")


def mean_nll(model: nn.Module, ids: torch.Tensor, ctx: int, batch: int = 8) -> float:
    """Mean next-token NLL over non-overlapping ``ctx`` windows of ``ids``."""
    n = (len(ids) - 1) // ctx * ctx
    x, y = ids[:n].view(-1, ctx), ids[1 : n + 1].view(-1, ctx)
    total = 0.0
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            _, loss = model(x[i : i + batch], y[i : i + batch])
            total += float(loss) * len(x[i : i + batch])
    return total / len(x)


def decode_nll(model: nn.Module, ids: torch.Tensor, ctx: int, limit: int) -> tuple[float, int]:
    """Mean next-token NLL over the first ``limit`` tokens' ``ctx`` windows (the same windows ``mean_nll`` starts
    with), fed one token at a time through the KV cache: the path ``generate`` takes, where every linear sees a
    one-row input and int8 layers run their decode kernel (ours rounds the activations to 15-bit integers per row;
    ``mean_nll``'s batched windows take the dequantise-then-matmul reference). Returns (NLL, tokens scored)."""
    windows = min((len(ids) - 1) // ctx, limit // ctx)
    if windows < 1:
        raise SystemExit(f"--decode-tokens {limit}: needs at least one window of {ctx} tokens "
                         f"(and a held-out text of more than {ctx} tokens)")
    total = 0.0
    with torch.inference_mode():
        for w in range(windows):
            x, y = ids[w * ctx : (w + 1) * ctx], ids[w * ctx + 1 : (w + 1) * ctx + 1]
            caches = model.make_caches(1, max_len=ctx)
            for t in range(ctx):
                logits, _ = model(x[t : t + 1].view(1, 1), caches=caches, start_pos=t)
                total += float(F.cross_entropy(logits[0, -1].float(), y[t]))
    return total / (windows * ctx), windows * ctx


# ------------------------------------------------------------------------------------------- weight bytes
def _tensor_parts(t: torch.Tensor) -> list[torch.Tensor]:
    """The plain tensors a (possibly quantized subclass) tensor is made of."""
    if hasattr(t, "__tensor_flatten__") and type(t) not in (torch.Tensor, nn.Parameter):  # torchao
        names, _ = t.__tensor_flatten__()
        return [p for n in names for p in _tensor_parts(getattr(t, n))]
    parts = [t]
    for attr in ("SCB",):  # bitsandbytes Int8Params: the int8 matrix and its per-row scales
        if getattr(t, attr, None) is not None:
            parts.append(getattr(t, attr))
    state = getattr(t, "quant_state", None)  # bitsandbytes Params4bit: packed codes + per-block absmax
    if state is not None:
        parts.append(state.absmax)
        if getattr(state, "state2", None) is not None:
            parts.append(state.state2.absmax)
    return parts


def weight_bytes(model: nn.Module) -> int:
    seen, total = set(), 0
    tensors = [t for _, t in model.named_parameters(remove_duplicate=False)]
    tensors += [t for _, t in model.named_buffers(remove_duplicate=False) if t.numel()]
    for t in tensors:
        for p in _tensor_parts(t):
            key = (p.data_ptr(), p.numel())
            if key in seen or p.device.type == "meta":
                continue
            seen.add(key)
            total += p.numel() * (2 if p.is_floating_point() else p.element_size())
    return total


# ------------------------------------------------------------------------------------------- methods
def _ours(method: str, **kw) -> Callable[[nn.Module], str]:  # noqa: ANN003
    def apply(model: nn.Module) -> str:
        from scratchllm.quantization import QuantConfig, quantize_model

        quantize_model(model, QuantConfig(method, **kw))
        return ""
    return apply


def _bf16(model: nn.Module) -> str:
    model.to(torch.bfloat16)
    return "all weights and activations bf16"


def _torchao_int8(model: nn.Module) -> str:
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    quantize_(model, Int8WeightOnlyConfig())
    return "nn.Linear only; embedding float"


def _bnb(kind: str) -> Callable[[nn.Module], str]:
    def apply(model: nn.Module) -> str:
        import bitsandbytes as bnb

        from scratchllm.model.linear import convert

        def swap(lin: nn.Linear) -> nn.Module:
            if kind == "int8":
                new = bnb.nn.Linear8bitLt(lin.in_features, lin.out_features, bias=lin.bias is not None,
                                          has_fp16_weights=False, threshold=6.0)
            else:
                new = bnb.nn.Linear4bit(lin.in_features, lin.out_features, bias=lin.bias is not None,
                                        quant_type=kind, compute_dtype=torch.float32)
            new.load_state_dict({k: v.detach().clone() for k, v in lin.state_dict().items()})
            return new.to("cpu")  # bitsandbytes quantizes when the module is moved to its device

        convert(model, swap)
        return "nn.Linear only; embedding float"
    return apply


def methods(include_libraries: bool) -> list[tuple[str, Callable[[nn.Module], str]]]:
    out = [("fp32", lambda m: ""), ("bf16", _bf16)]
    for method, kw in OURS:
        name = method if method == "int8" else f"int4 g{kw['group_size']} {'sym' if kw['symmetric'] else 'asym'}"
        out.append((name, _ours(method, **kw)))
    if include_libraries:
        for name, fn, module in (("torchao int8wo", _torchao_int8, "torchao"), ("bnb LLM.int8", _bnb("int8"),
                                 "bitsandbytes"), ("bnb nf4", _bnb("nf4"), "bitsandbytes")):
            try:
                __import__(module)
            except ImportError:
                print(f"skipping {name}: {module} is not installed", file=sys.stderr)
                continue
            out.append((name, fn))
    return out


# ------------------------------------------------------------------------------------------- one run
def evaluate_run(label: str, ckpt: str, spec: str, args: argparse.Namespace) -> dict:
    from scratchllm.generation import generate
    from scratchllm.generation.loading import load_for_generation
    from scratchllm.quantization.native import status as native_status

    base, tokenizer = load_for_generation(ckpt, device="cpu", dtype="float32")
    text = held_out_text(spec)
    ids = torch.tensor(tokenizer.encode(text)[: args.max_tokens + 1], dtype=torch.long)
    ctx = base.config.context_length
    prompt = ids[: args.prompt_tokens].tolist()
    rows, n_decode = [], 0
    for name, apply in methods(not args.no_libraries):
        print(f"[{label}] {name} …", file=sys.stderr, flush=True)
        model = copy.deepcopy(base)
        note = apply(model) or ""
        model.eval()
        nll = mean_nll(model, ids, ctx)
        with torch.inference_mode():
            tokens = generate(model, prompt, args.new_tokens, temperature=0)
        speed = None
        if args.speed:
            with torch.inference_mode():
                generate(model, prompt[:4], 8, temperature=0)
                start = time.perf_counter()
                generate(model, prompt[:4], args.speed_tokens, temperature=0)
                speed = args.speed_tokens / (time.perf_counter() - start)
        rows.append(Row(name, nll, weight_bytes(model), tokens, speed, note))
        if args.decode_tokens:
            rows[-1].extra["decode"], n_decode = decode_nll(model, ids, ctx, args.decode_tokens)
            batched = mean_nll(model, ids[: n_decode + 1], ctx)  # the same tokens, batched
            rows[-1].extra["batched"] = batched
            if name == "int8" and native_status()[0] is not None:  # the same weights through torch's kernel
                with torch_int8_kernel(), torch.inference_mode():
                    nll_torch, _ = decode_nll(model, ids, ctx, args.decode_tokens)
                    tokens_torch = generate(model, prompt, args.new_tokens, temperature=0)
                rows.append(Row("int8, torch's kernel", nll, rows[-1].bytes, tokens_torch, None,
                                "int8's weights; one-token columns through torch's _weight_int8pack_mm",
                                {"decode": nll_torch, "batched": batched}))
        del model
    return {"label": label, "ckpt": ckpt, "spec": spec, "config": base.config, "tokenizer": tokenizer,
            "n_tokens": (len(ids) - 1) // ctx * ctx, "n_decode": n_decode, "prompt": prompt, "rows": rows,
            "kernel": native_status()}


def _same_prefix(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def report(result: dict, args: argparse.Namespace) -> str:
    rows: list[Row] = result["rows"]
    fp32 = rows[0]
    bf16_bytes = next(r.bytes for r in rows if r.method == "bf16")
    cfg, tok = result["config"], result["tokenizer"]
    lines = [f"### {result['label']}", "",
             f"`{result['ckpt']}` — {cfg.name}: {cfg.n_layer} layers, n_embd {cfg.n_embd}, vocab {cfg.vocab_size} "
             f"({tok.name} tokenizer), {cfg.position}/{cfg.norm}/{cfg.mlp}, tied={cfg.tie_embeddings}. Held-out: "
             f"`{result['spec']}`, {result['n_tokens']:,} tokens in windows of {cfg.context_length}. Greedy: "
             f"{args.new_tokens} new tokens after a {len(result['prompt'])}-token held-out prompt.", "",
             "| method | held-out ppl | Δ ppl vs fp32 | one token at a time: Δ ppl vs fp32 | one token at a time "
             "− batched, NLL | weight bytes | ×bf16 | greedy tokens = fp32 | decode tok/s | note |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ppl, change = math.exp(r.nll), math.exp(r.nll - fp32.nll) - 1
        decode = f"{math.exp(r.extra['decode'] - fp32.extra['decode']) - 1:+.2%}" if "decode" in r.extra else "—"
        path = f"{r.extra['decode'] - r.extra['batched']:+.1e}" if "batched" in r.extra else "—"
        same = _same_prefix(r.tokens, fp32.tokens)
        speed = f"{r.tok_per_s:.1f}" if r.tok_per_s else "—"
        lines.append(f"| {r.method} | {ppl:.4f} | {change:+.2%} | {decode} | {path} | {r.bytes / 2**20:.2f} MB | "
                     f"{r.bytes / bf16_bytes:.3f} | {same}/{len(fp32.tokens)} | {speed} | {r.note} |")
    if "decode" in fp32.extra:
        kernel, why = result["kernel"]
        runs = "our kernel" if kernel is not None else f"torch's kernel ({why})"
        lines += ["", f"One token at a time: the first {result['n_decode']:,} held-out tokens (whole windows), "
                  f"each fed alone through the KV cache as `generate` does; int8 layers then run {runs}. "
                  f"\"− batched\": that NLL minus the same model's batched NLL on the same tokens, i.e. what the "
                  f"one-token path (the decode kernels, the KV cache) changes; the other columns are over all "
                  f"{result['n_tokens']:,} tokens."]
    lines += ["", "Greedy continuations (first 200 characters):", ""]
    lines.append("```text")
    lines.append(f"prompt    : {tok.decode(result['prompt'])[-120:]!r}")
    for r in rows:
        if r.method in ("fp32", "int8", "int4 g64 asym", "int4 g128 sym", "bnb nf4", "torchao int8wo"):
            lines.append(f"{r.method:<14}: {tok.decode(r.tokens)[:200]!r}")
    lines += ["```", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", nargs=3, action="append", metavar=("LABEL", "CKPT", "HELD_OUT"), required=True,
                   help="HELD_OUT: plays | tinyshakespeare=<file> | a text file")
    p.add_argument("--max-tokens", type=int, default=32768, help="held-out tokens scored per method")
    p.add_argument("--prompt-tokens", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--no-libraries", action="store_true", help="ours only (skip torchao / bitsandbytes)")
    p.add_argument("--decode-tokens", type=int, default=4096,
                   help="also score this many held-out tokens one at a time through the KV cache (the decode "
                        "kernels' path); 0: skip")
    p.add_argument("--speed", action="store_true", help="also time decoding (idle machine only)")
    p.add_argument("--speed-tokens", type=int, default=128)
    p.add_argument("--out", help="write the Markdown report here (also printed)")
    args = p.parse_args()
    torch.manual_seed(0)
    sections = [report(evaluate_run(label, ckpt, spec, args), args) for label, ckpt, spec in args.run]
    cmd = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    head = [f"# Quantization quality on trained models ({time.strftime('%Y-%m-%d')})", "",
            f"Machine: {cpu_model()}, {os.cpu_count()} cores, torch "
            f"{torch.__version__}, {torch.get_num_threads()} thread(s). Command:", "", "```sh", cmd, "```", ""]
    text = "\n".join(head + sections)
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
