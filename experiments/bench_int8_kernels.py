"""Int8 weight-only matrix-vector products on the CPU, per gpt2-124m shape: which path streams the int8 matrix fastest.

One row of bf16 activations (decode at batch 1) times each of gpt2-124m's matrices (qkv 2304x768, proj 768x768, fc
3072x768, mlp proj 768x3072, head 50304x768), every candidate in one process, interleaved (each repeat times every
candidate once, in turn), medians over the repeats, so a busy machine slows all of them alike:

- ``bf16``: what bf16 decoding uses (generation/fastpath.py): oneDNN's blocked bf16 weight (``_linear_pointwise``)
  where oneDNN offers bf16 (AVX-512 or AVX-NE-CONVERT), else ``torch.mv``;
- ``int8pack``: ``torch.ops.aten._weight_int8pack_mm`` (Int8Linear's kernel until now);
- ``compiled woq`` (``--compiled``, like the next two): ``torch.compile`` of ``F.linear(x, w.to(x.dtype)) * s``,
  the form Inductor's woq-int8 pattern matches (torch/_inductor/fx_passes/quantization.py): without max-autotune
  it lowers to ``_weight_int8pack_mm``;
- ``compiled reduce``: ``torch.compile`` of ``(w.to(float32) * x.float()).sum(-1) * s``: no mm for the pattern to
  match, so Inductor writes its own fused, vectorised loop (int8 read once, float32 accumulation);
- ``compiled reduce T``: the same with the matrix stored transposed (in, out), vectors of outputs accumulated;
- ``int4 pair``: int8 as two 4-bit planes through torch's int4 kernel (``_weight_int4pack_mm_for_cpu``, whose
  layout accumulates vectors of outputs): exact, one byte per weight (the comment in ``candidates``);
- ``fbgemm dyn W8A8`` (when torch has fbgemm): ``quantized.linear_dynamic``, i.e. torch's dynamic quantization:
  the activations are quantized too (per call), so it is *not* weight-only: numerics differ (max |err| column);
- ``autotune cpp`` (``--autotune``, slow to compile): max-autotune with the C++ GEMM template (int8 weight as a
  frozen module buffer, dequantised inside its micro-kernel).

GB/s counts the bytes each path must read (weights + scales); ``×bf16`` is the candidate's speed over ``bf16``.
Run single-threaded on a shared machine (the ratios are then indicative; absolute figures need an idle one)::

    OMP_NUM_THREADS=1 .venv/bin/python experiments/bench_int8_kernels.py --repeats 30 [--compiled] [--autotune]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F

SHAPES = {"qkv": (2304, 768), "attn.proj": (768, 768), "fc": (3072, 768), "mlp.proj": (768, 3072),
          "head": (50304, 768)}


class Woq(torch.nn.Module):
    """The int8 matrix and its scales as module buffers (what freezing folds into constants)."""

    def __init__(self, q: torch.Tensor, s: torch.Tensor, form: str) -> None:
        super().__init__()
        self.register_buffer("q", q)
        self.register_buffer("s", s)
        self.form = form

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.form == "linear":
            return F.linear(x, self.q.to(x.dtype)) * self.s
        if self.form == "reduce_t":  # q stored (in, out): accumulate whole vectors of outputs, no horizontal sums
            return ((self.q.to(torch.float32) * x.float()[..., :, None]).sum(-2) * self.s.float()).to(x.dtype)
        return ((self.q.to(torch.float32) * x.float()[..., None, :]).sum(-1) * self.s.float()).to(x.dtype)


def candidates(n: int, k: int, compiled: bool, autotune: bool) -> dict[str, tuple]:
    torch.manual_seed(0)
    w = torch.randn(n, k) * 0.02
    s = (w.abs().amax(1) / 127).clamp(min=1e-10)
    q = torch.round(w / s[:, None]).clamp(-127, 127).to(torch.int8)
    sb = s.to(torch.bfloat16)
    wb = (q.float() * s[:, None]).to(torch.bfloat16)
    int8_bytes = n * k + 2 * n
    try:  # what bf16 decoding uses (generation/fastpath.py): oneDNN's packed weight, else addmv
        packed = torch.ops.mkldnn._reorder_linear_weight(wb, 1)
        out = {"bf16": (lambda x: torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], ""), 2 * n * k)}
        out["bf16"] += (q.float() * s[:, None],)
    except RuntimeError:  # oneDNN refuses bf16 without AVX-512 / AVX-NE-CONVERT
        out = {"bf16": (lambda x: torch.mv(wb, x[0])[None] if len(x) == 1 else F.linear(x, wb), 2 * n * k,
                        q.float() * s[:, None])}
    out |= {
        "int8pack": (lambda x: torch.ops.aten._weight_int8pack_mm(x, q, sb), int8_bytes),
    }
    if compiled:
        out["compiled woq"] = (torch.compile(Woq(q, sb, "linear"), dynamic=False), int8_bytes)
        out["compiled reduce"] = (torch.compile(Woq(q, sb, "reduce"), dynamic=False), int8_bytes)
        out["compiled reduce T"] = (torch.compile(Woq(q.t().contiguous(), sb, "reduce_t"), dynamic=False),
                                    int8_bytes)
    # int8 as two 4-bit planes through torch's int4 kernel: q + 128 = 16·hi + lo (hi, lo in 0..15), and the kernel
    # decodes a code u as (u − 8)·scale + zero, so q·s = 16s·(hi − 8) + [s·(lo − 8) + 8s]: one call over [x, x]
    # against [hi | lo], groups of the hi half with (16s, 0), of the lo half with (s, 8s). Exact; 1 byte a weight.
    u = q.to(torch.int32) + 128
    pair = torch.ops.aten._convert_weight_to_int4pack_for_cpu(torch.cat((u >> 4, u & 15), dim=1), 1)
    g = next(gs for gs in (256, 128, 64, 32) if k % gs == 0)
    sg = sb.float()[:, None].expand(n, k // g)
    table = torch.stack((torch.cat((16 * sg, sg), 1), torch.cat((torch.zeros_like(sg), 8 * sg), 1)), -1)
    table = table.transpose(0, 1).contiguous().to(torch.bfloat16)  # (groups, n, 2), the kernel's table
    out["int4 pair"] = (lambda x: torch.ops.aten._weight_int4pack_mm_for_cpu(torch.cat((x, x), -1), pair, g, table),
                        pair.numel() + table.numel() * 2)
    if "fbgemm" in torch.backends.quantized.supported_engines:  # W8A8 dynamic: NOT weight-only (x is quantized)
        qw = torch.quantize_per_channel(w, s, torch.zeros(n, dtype=torch.long), 0, torch.qint8)
        prepacked = torch.ops.quantized.linear_prepack(qw, None)
        out["fbgemm dyn W8A8"] = (lambda x: torch.ops.quantized.linear_dynamic(x.float(), prepacked, True)
                                  .to(x.dtype), int8_bytes)
    if autotune:
        import torch._inductor.config as cfg

        cfg.freezing = True
        cfg.max_autotune_gemm_backends = "CPP,ATEN"
        out["autotune cpp"] = (torch.compile(Woq(q, sb, "linear"), mode="max-autotune", dynamic=False), int8_bytes)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--inner", type=int, default=20, help="calls per timing (the head: a fifth of this)")
    p.add_argument("--shapes", default=",".join(SHAPES))
    p.add_argument("--rows", type=int, default=1, help="input rows (1 = decode; more = a prefill's check)")
    p.add_argument("--compiled", action="store_true", help="add the torch.compile candidates (compiles per shape)")
    p.add_argument("--autotune", action="store_true", help="add max-autotune's C++ GEMM template (slow compile)")
    args = p.parse_args()
    from torch._dynamo.utils import counters

    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, rows={args.rows}")
    print("| shape | path | µs | GB/s | ×bf16 | max err / max |ref| (float32 reference) |")
    print("|---|---|---|---|---|---|")
    for name in args.shapes.split(","):
        n, k = SHAPES[name]
        paths = candidates(n, k, args.compiled, args.autotune)
        x = torch.randn(args.rows, k).to(torch.bfloat16)
        with torch.inference_mode():
            ref = F.linear(x.float(), paths["bf16"][2])  # dequantise-then-matmul in float32
            errs = {}
            for label, (fn, *_) in paths.items():  # warm-up (compiles) and the numeric check
                start = time.perf_counter()
                errs[label] = float((fn(x).float() - ref).abs().max() / ref.abs().max())
                if time.perf_counter() - start > 1:
                    print(f"  ({name} {label}: first call {time.perf_counter() - start:.1f} s)")
            inner = max(1, args.inner // 5) if name == "head" else args.inner
            times: dict[str, list[float]] = {label: [] for label in paths}
            for _ in range(args.repeats):
                for label, (fn, *_) in paths.items():
                    start = time.perf_counter()
                    for _ in range(inner):
                        fn(x)
                    times[label].append((time.perf_counter() - start) / inner)
        base = statistics.median(times["bf16"])
        for label, (_, nbytes, *_) in paths.items():
            t = statistics.median(times[label])
            print(f"| {name} {n}x{k} | {label} | {t * 1e6:.0f} | {nbytes / t / 1e9:.1f} | {base / t:.2f} "
                  f"| {errs[label]:.3g} |")
    print(f"inductor woq pattern matches: {counters['inductor']['woq_matcher_count']}")


if __name__ == "__main__":
    main()
