"""Weight-only quantization, measured: bytes on disk, resident memory of a decoding process, decode tokens/s for
fp32, bf16, int8 and int4 on one model shape, and (with ``--ckpt``) held-out perplexity of a trained model.

Each mode runs in its own subprocess, so its peak RSS is that of a decoding process as ``generate`` runs it (fp32 and
bf16 build the float model; int8 and int4 load a quantized file written by an earlier subprocess), with random weights
for speed and memory (quantization speed does not depend on the values) and greedy decoding at batch 1 with the
KV cache, like experiments/bench_generate.py, inside ``decode_session`` (bf16's weights packed once, in the warm-up,
as the server and evaluate run it). ``int8`` decodes with our kernel where the CPU runs it
(scratchllm/quantization/native.py), ``int8-torch`` the same file with torch's ``_weight_int8pack_mm``
(``SCRATCHLLM_INT8_KERNEL=torch``). int8 and int4 compute in bf16 like the bf16 row (the speed
compared is that of the weights' format, not of the activations'; ``--fp32-activations`` shows float32's slow
kernel path). bf16 builds its model in bf16 directly (no float32 copy first). The
peak RSS is also given over the process's RSS after its imports (interpreter, torch, scratchllm: ~0.2-0.3 GB that
every mode pays), which is what the weights, the KV cache and the kernels' working memory add. Perplexity needs a
*trained* checkpoint and a text it was not trained on: ``--ckpt run.ckpt --text held_out.txt`` (several methods and
group sizes, torchao and bitsandbytes beside ours: experiments/quantize_quality.py).

Full run (a quiet machine, minutes)::

    python experiments/bench_quantize.py --preset gpt2-124m --new-tokens 128
    python experiments/bench_quantize.py --preset micro --ckpt logs/train/<run>/checkpoints/last.ckpt --text held_out.txt

Smoke run (seconds): ``python experiments/bench_quantize.py --quick``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = ("fp32", "bf16", "int8", "int8-torch", "int4")
# int8-torch: the same int8 file decoded with torch's _weight_int8pack_mm instead of our kernel (quantization/native.py)
KERNEL_ENV = {"int8": {"SCRATCHLLM_INT8_KERNEL": "auto"}, "int8-torch": {"SCRATCHLLM_INT8_KERNEL": "torch"}}


def model_config(preset: str, quick: bool):  # noqa: ANN201 - a ModelConfig (imported late, with torch)
    """The shape every mode and the bytes table measure: ``preset`` at context 1024, or tiny ones for ``--quick``."""
    from scratchllm.model.presets import load_preset

    cfg = load_preset(preset, context_length=1024)
    if quick:
        cfg = cfg.replace(n_layer=2, n_embd=128, n_head=2, n_kv_head=2, mlp_hidden=512, vocab_size=1000)
    return cfg


def _one_mode(args: argparse.Namespace) -> dict:
    """Run in a subprocess: build (or load) the model in one mode, decode, report bytes, RSS and speed."""
    import torch

    from scratchllm.checkpoint import CheckpointMeta
    from scratchllm.generation import decode_session, generate
    from scratchllm.model import GPT
    from scratchllm.quantization import QuantConfig, load_quantized, quantize_model, save_quantized, weight_bytes

    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    base_rss = _current_rss()  # the interpreter, torch and scratchllm imported: what every mode pays
    cfg = model_config(args.preset, args.quick)
    disk = None
    if args.file:  # int8/int4: what `generate ckpt_path=<quantized file>` does, float weights never built
        model, _ = load_quantized(args.file)
        disk = Path(args.file).stat().st_size
    elif args.mode == "bf16":  # built in bf16 directly: a float32 detour would set this mode's peak, not decoding
        torch.set_default_dtype(torch.bfloat16)
        model = GPT(cfg).eval()
        torch.set_default_dtype(torch.float32)
    else:
        model = GPT(cfg).eval()
        if args.mode in ("int8", "int8-torch", "int4"):  # the writing step: quantize and save, nothing timed
            quant = QuantConfig("int8") if args.mode.startswith("int8") else QuantConfig("int4", args.group_size)
            quantize_model(model, quant)
            save_quantized(model, CheckpointMeta(format=1, model=cfg.to_dict(), quantization=quant.to_dict()),
                           args.write)
            return {"mode": args.mode}
    if args.mode == "bf16" or (args.mode != "fp32" and not args.fp32_activations):
        model.to(torch.bfloat16)
    nbytes = weight_bytes(model)
    prompt = [[1, 2, 3, 4]]
    with decode_session(model):  # bf16 packs its weights in the warm-up, once, as the server and evaluate do
        generate(model, prompt, 8, temperature=0)  # warm-up (int8: builds our kernel the first time on a machine)
        start = time.perf_counter()
        generate(model, prompt, args.new_tokens, temperature=0)
        seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"mode": args.mode, "weight_MB": nbytes / 2**20, "disk_MB": (disk or nbytes) / 2**20,
            "peak_rss_MB": rss / 2**20, "over_base_MB": (rss - base_rss) / 2**20,
            "tok_per_s": args.new_tokens / seconds}


def _current_rss() -> int:
    """This process's resident bytes now (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _perplexity(ckpt: str, text: str, group_size: int) -> list[dict]:
    import torch

    from scratchllm.generation.loading import load_for_generation

    rows = []
    for mode in ("fp32", "int8", "int4"):
        model, tokenizer = load_for_generation(ckpt, quantize=None if mode == "fp32" else mode)
        ids = torch.tensor(tokenizer.encode(Path(text).read_text(encoding="utf-8")), dtype=torch.long)
        ctx = model.config.context_length
        n = (len(ids) - 1) // ctx * ctx
        with torch.inference_mode():
            _, loss = model(ids[:n].view(-1, ctx), ids[1 : n + 1].view(-1, ctx))
        rows.append({"mode": mode, "perplexity": math.exp(float(loss))})
    return rows


def _bytes_table(preset: str, quick: bool) -> None:
    """Weight bytes per method on ``preset``'s shapes (context 1024, as the decode runs), floats counted as bf16."""
    import torch

    from scratchllm.model import GPT
    from scratchllm.quantization import QuantConfig, quantize_model, weight_bytes

    cfg = model_config(preset, quick)
    methods = [("bf16", None), ("int8", QuantConfig("int8"))]
    methods += [(f"int4 group {g}", QuantConfig("int4", g)) for g in (32, 64, 128)]
    print(f"| {preset}: method | weights MiB | weights MB | ×bf16 |\n|---|---:|---:|---:|")
    base = None
    for name, quant in methods:
        model = GPT(cfg).eval()
        if quant is not None:
            quantize_model(model, quant)
        nbytes = weight_bytes(model.to(torch.bfloat16))
        base = base or nbytes
        print(f"| {name} | {nbytes / 2**20:.1f} | {nbytes / 1e6:.1f} | {nbytes / base:.4f} |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="gpt2-124m")
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--group-size", type=int, default=64)
    p.add_argument("--fp32-activations", action="store_true",
                   help="int8/int4 with float32 activations (default bf16, like the bf16 row: torch's CPU kernels "
                        "are vectorised for bf16; in float32 they take a slow path)")
    p.add_argument("--threads", type=int, default=0, help="torch threads per mode (0: torch's default); 1 on a "
                   "shared machine gives ratios that others' load disturbs less")
    p.add_argument("--modes", default=",".join(MODES), help="which of fp32,bf16,int8,int8-torch,int4 to run "
                   "(bf16 always: the ratios are against it)")
    p.add_argument("--quick", action="store_true", help="tiny shapes, a few tokens: checks the script runs")
    p.add_argument("--ckpt", help="a trained checkpoint: also report held-out perplexity per mode")
    p.add_argument("--text", help="the held-out text for --ckpt")
    p.add_argument("--bytes-only", action="store_true", help="only the weight bytes of each method and group size "
                   "(the same on every machine; nothing timed)")
    p.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)  # internal: one mode in this process
    p.add_argument("--write", help=argparse.SUPPRESS)  # internal: quantize and save here
    p.add_argument("--file", help=argparse.SUPPRESS)  # internal: decode from this quantized file
    args = p.parse_args()
    if args.mode:
        print(json.dumps(_one_mode(args)))
        return
    if args.bytes_only:
        _bytes_table(args.preset, args.quick)
        return
    if args.quick:
        args.new_tokens = 8
    rows = []
    tmp = tempfile.TemporaryDirectory()
    modes = [m for m in MODES if m in args.modes.split(",") or m == "bf16"]
    for mode in modes:
        cmd = [sys.executable, __file__, "--mode", mode, "--preset", args.preset, "--new-tokens",
               str(args.new_tokens), "--group-size", str(args.group_size), "--threads", str(args.threads)]
        cmd += ["--quick"] * args.quick + ["--fp32-activations"] * args.fp32_activations
        print(f"running {mode} …", file=sys.stderr, flush=True)
        env = {**os.environ, **KERNEL_ENV.get(mode, {})}
        if mode != "fp32" and mode != "bf16":
            file = str(Path(tmp.name) / f"{mode}.safetensors")
            subprocess.run([*cmd, "--write", file], capture_output=True, text=True, check=True, env=env)
            cmd += ["--file", file]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    tmp.cleanup()
    bf16 = next(r for r in rows if r["mode"] == "bf16")
    print("| mode | weights MiB | ×bf16 | file MiB | peak RSS MiB | ×bf16 | peak RSS over imports MiB | ×bf16 "
          "| decode tok/s | ×bf16 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['weight_MB']:.1f} | {r['weight_MB'] / bf16['weight_MB']:.3f} | {r['disk_MB']:.1f} "
              f"| {r['peak_rss_MB']:.0f} | {r['peak_rss_MB'] / bf16['peak_rss_MB']:.2f} | {r['over_base_MB']:.0f} "
              f"| {r['over_base_MB'] / bf16['over_base_MB']:.2f} | {r['tok_per_s']:.1f} "
              f"| {r['tok_per_s'] / bf16['tok_per_s']:.2f} |")
    if args.ckpt:
        ppl = _perplexity(args.ckpt, args.text, args.group_size)
        base = ppl[0]["perplexity"]
        for r in ppl:
            print(f"{r['mode']}: held-out perplexity {r['perplexity']:.3f} ({r['perplexity'] / base - 1:+.2%})")


if __name__ == "__main__":
    main()
