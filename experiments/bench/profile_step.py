"""Where a training step's time goes: torch's profiler over the steady compiled step, grouped by what we can change.

    python experiments/bench/profile_step.py                          # micro, batch 12, what auto picks here
    python experiments/bench/profile_step.py --precision 32-true --no-compile --attention sdpa   # eager fp32

The step is the plain loop's (autocast as Lightning applies it, the template's AdamW, clipping at 1.0), on random
tokens of the preset's vocabulary (the data path is not what is measured), after warm-up steps that include the
compile. Inductor's generated kernels are recorded one by one (``cpp.enable_kernel_profile``), so the table says
how much is matrix products (oneDNN/MKL: what the matmul ceiling bounds), how much is Inductor's fused elementwise
and reduction kernels (norms, GELU, softmax, casts, the loss) and how much is the optimizer. The achieved matmul
rate is the step's matmul FLOPs (6N + attention, ``flops_per_token``) over the matmul time. Run it on an otherwise
idle machine; results: ``experiments/results/profile_step_<date>[_<tag>].md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import shlex
import sys
import time
from collections import defaultdict
from pathlib import Path

if __name__ == "__main__":  # run as a script: make `bench` importable, drop this folder from the path
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import torch

from bench.machine import REPO, header_lines, machine_info
from scratchllm.heap import apply_heap
from scratchllm.model import GPT, flops_per_token, load_preset
from scratchllm.training import auto
from scratchllm.training.optim import build_adamw

RESULTS = REPO / "experiments" / "results"
MATMULS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear")


OPTIMIZER_OPS = ("aten::lerp_", "aten::addcmul_", "aten::addcdiv_", "aten::sqrt", "aten::div_", "aten::mul_",
                 "aten::linalg_vector_norm")  # what foreach AdamW and clip_grad_norm_ run per tensor on CPU


def category(name: str) -> str:
    if name in MATMULS:
        return "matrix products (oneDNN / MKL)"
    if name.startswith(("graph_", "cpp_fused", "kernel_cpp")):
        return "Inductor kernels (fused elementwise / reductions)"
    if name.startswith(("aten::_foreach", "aten::_fused_adam", "Optimizer.")) or name in OPTIMIZER_OPS:
        return "optimizer (AdamW) and clipping"
    return "other (eager elementwise ops, copies, casts, autograd, Python)"


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="micro")
    p.add_argument("--batch", type=int, default=12)
    p.add_argument("--precision", default="auto", choices=["auto", "32-true", "bf16-mixed"])
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--attention", default="auto", choices=["auto", "sdpa", "explicit"])
    p.add_argument("--foreach", action="store_true", help="the multi-tensor AdamW (default: the fused kernel, "
                   "optim.fused=null's pick on CPU and CUDA)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--steps", type=int, default=20, help="timed steps (the profiled window is 5 more)")
    p.add_argument("--tag", default=None)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)

    apply_heap("auto")  # as a training run does
    precision = auto.decide_precision(args.precision, "cpu").value
    compiled = not args.no_compile
    attention = auto.decide_attention(args.attention, "cpu", compiled).value
    torch.manual_seed(0)
    config = dataclasses.replace(load_preset(args.model), attention=attention)
    model = GPT(config)
    optimizer = build_adamw(model, lr=1e-4, fused=False if args.foreach else None)
    if compiled:
        import torch._inductor.config as inductor_config

        inductor_config.cpp.enable_kernel_profile = True  # each generated kernel is a profiler event
        model.compile()
    x = torch.randint(0, config.vocab_size, (args.batch, config.context_length))
    y = torch.randint(0, config.vocab_size, (args.batch, config.context_length))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False, enabled=precision == "bf16-mixed")

    def step() -> None:
        with autocast:
            _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    print(f"{args.model}: {precision}, compile={compiled}, attention={attention}; warm-up {args.warmup} steps …",
          file=sys.stderr, flush=True)
    for _ in range(args.warmup):
        step()
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    step_s = (time.perf_counter() - started) / args.steps
    from torch.profiler import ProfilerActivity, profile

    profiled = 5
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(profiled):
            step()
    groups: dict[str, float] = defaultdict(float)
    kernels: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        cat = category(event.key)
        groups[cat] += event.self_cpu_time_total / 1e3 / profiled  # ms per step
        if cat.startswith("Inductor"):
            kernels[event.key] += event.self_cpu_time_total / 1e3 / profiled
    total = sum(groups.values())
    tokens = args.batch * config.context_length
    matmul_ms = groups["matrix products (oneDNN / MKL)"]
    rate = flops_per_token(config) * tokens / (matmul_ms / 1e3) / 1e9 if matmul_ms else 0.0

    machine = machine_info("cpu")
    command = "python " + " ".join(shlex.quote(a) for a in ["experiments/bench/profile_step.py",
                                                             *(sys.argv[1:] if argv is None else argv)])
    adamw = "fused" if optimizer.defaults.get("fused") else "foreach"
    lines = [f"# Where the {args.model} step goes: {precision}, compile={compiled}, attention={attention}, "
             f"{adamw} AdamW", "",
             *header_lines(machine, command),
             f"- step: {step_s * 1e3:.1f} ms over {args.steps} steps = {tokens / step_s:,.0f} tokens/s (batch "
             f"{args.batch} × {config.context_length}); the profiled window's step: {total:.1f} ms (profiling "
             f"adds a little)", "",
             "| part | ms / step | share |", "|---|---:|---:|"]
    for cat, ms in sorted(groups.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {cat} | {ms:.1f} | {ms / total:.0%} |")
    lines += ["", f"Matrix products: {flops_per_token(config) * tokens / 1e9:.1f} GFLOP per step in {matmul_ms:.1f} ms "
                  f"= {rate:,.0f} GFLOP/s (compare the matmul ceiling of experiments/bench/run.py).", ""]
    if kernels:
        lines += ["Inductor's largest kernels:", "", "| kernel | ms / step |", "|---|---:|"]
        for name, ms in sorted(kernels.items(), key=lambda kv: -kv[1])[:8]:
            lines.append(f"| `{name[:90]}` | {ms:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / (f"profile_step_{dt.date.today():%Y-%m-%d}" + (f"_{args.tag}" if args.tag else "") + ".md")
    path.write_text(text)
    return path


if __name__ == "__main__":
    main()
