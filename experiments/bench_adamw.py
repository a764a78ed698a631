"""What one optimizer step costs on CPU: torch's AdamW kernels side by side, with the gradient clipping a step does.

``optim.fused: null`` picks the fused kernel on CPU and CUDA (src/scratchllm/training/optim.py). This is the
measurement behind it: a preset's parameters with gradients, ``clip_grad_norm_`` then ``AdamW.step()`` (the
template's parameter groups and defaults), for the multi-tensor ``foreach`` kernel, the ``fused`` one and the
``foreach`` step compiled with ``torch.compile``. The kinds run interleaved, round after round, and each keeps
its best round (other load only ever slows a round down).

    python experiments/bench_adamw.py                  # micro, ~30 s on 2 cores (the compile included)
    python experiments/bench_adamw.py --preset nano
"""

from __future__ import annotations

import argparse
import shlex
import sys

import torch

from bench.machine import cpu_model
from bench.timing import per_call_interleaved
from scratchllm.model import GPT, load_preset
from scratchllm.training.optim import build_adamw

KINDS = ("foreach", "fused", "foreach, compiled")


def make_step(kind: str, preset: str) -> tuple:
    """(the step to time, the optimizer, the parameter count) for one kind of AdamW."""
    torch.manual_seed(0)
    model = GPT(load_preset(preset))
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    optimizer = build_adamw(model, lr=1e-3, fused=kind == "fused")
    params = list(model.parameters())

    def step() -> None:
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()

    timed = torch.compile(step) if kind.endswith("compiled") else step
    return timed, optimizer, sum(p.numel() for p in params)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="micro")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps a round")
    args = parser.parse_args()
    steps, n = {}, 0
    for kind in KINDS:
        print(f"{kind} …", file=sys.stderr, flush=True)
        steps[kind], _, n = make_step(kind, args.preset)
        for _ in range(3):  # warm-up (and the compile)
            steps[kind]()
    best = per_call_interleaved({kind: lambda step=step: [step() for _ in range(args.steps)]
                                 for kind, step in steps.items()}, args.steps, args.rounds)
    command = shlex.join(["python", "experiments/bench_adamw.py", *sys.argv[1:]])
    print(f"machine: {cpu_model()}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{args.preset}: {n / 1e6:.2f}M parameters; command: {command}\n")
    print("| AdamW | ms per step (clipping included) | × foreach |")
    print("|---|---:|---:|")
    for kind in KINDS:
        print(f"| {kind} | {best[kind] * 1e3:.1f} | {best['foreach'] / best[kind]:.2f}× |")


if __name__ == "__main__":
    main()
