"""Resident memory the matmul runtime adds per new matrix shape: code (oneDNN's JIT kernels, its primitive cache,
the library pages they touch), not tensors. Why bench_memory.py has ``--warmup shapes``.

    MALLOC_MMAP_THRESHOLD_=65536 .venv/bin/python experiments/bench_runtime_rss.py

Each cell is a fresh process (one thread): after a warm-up product, it multiplies the nano model's matrix shapes
(forward and both backward products of each linear, at 2,048 and 8,192 rows: 42 shapes), frees every result and
reads how much VmRSS grew. With ``MALLOC_MMAP_THRESHOLD_=65536`` freed tensors leave the resident set at once, so
what stays is the runtime's. ``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` bounds oneDNN's cache of ready kernels (default
1,024).
"""

from __future__ import annotations

import os
import subprocess
import sys

from bench.machine import cpu_model  # experiments/ is on the path: this file runs as a script

CHILD = r"""
import gc, sys, torch
torch.set_num_threads(1)
def rss():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS")) / 1024
dt = getattr(torch, sys.argv[1])
x, w = torch.randn(64, 16, dtype=dt), torch.randn(16, 16, dtype=dt)
for _ in range(3):
    x @ w
before = rss()
shapes = [s for m in (2048, 8192) for k, n in ((128, 384), (128, 128), (128, 512), (512, 128), (128, 80), (384, 128),
                                                   (128, 512)) for s in ((m, k, n), (k, m, n), (m, n, k))]
for m, k, n in shapes:
    a, b = torch.randn(m, k, dtype=dt), torch.randn(k, n, dtype=dt)
    c = a @ b
    del a, b, c
gc.collect()
print(len(shapes), rss() - before)
"""


def main() -> None:
    cpu = cpu_model()
    threshold = os.environ.get("MALLOC_MMAP_THRESHOLD_", "unset")
    print(f"machine: {cpu}, torch threads 1; MALLOC_MMAP_THRESHOLD_={threshold}")
    print("| dtype | ONEDNN_PRIMITIVE_CACHE_CAPACITY | shapes | RSS added MB |")
    print("|---|---|---:|---:|")
    for dtype, capacity in (("float32", None), ("bfloat16", None), ("bfloat16", "8"), ("bfloat16", "0")):
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        if capacity is not None:
            env["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = capacity
        out = subprocess.run([sys.executable, "-c", CHILD, dtype], env=env, capture_output=True, text=True, check=True)
        n, mb = out.stdout.split()
        print(f"| {dtype} | {capacity or 'default (1024)'} | {n} | {float(mb):.1f} |")


if __name__ == "__main__":
    main()
