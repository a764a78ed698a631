"""What the machine can do at best: dense matmul FLOP/s per dtype and memory read bandwidth.

MFU (model FLOPs utilisation) divides the FLOPs a training step must do by the time it took and by a peak. Data-
sheet peaks are meaningless on a shared, virtualised CPU (clock, turbo, AVX-512 down-clocking, how many cores we
really get), so the peak here is *measured*: the best rate of one large square matmul, the operation every
linear layer is made of, in the dtype the training computes in (fp32, or bf16 where the CPU's AVX512_BF16/AMX or
the GPU's tensor cores make it faster). An MFU of 100% would mean every FLOP of the step ran at that rate.

Sizing: the matrix side doubles from 512 until one product takes at least ``min_seconds`` (big enough to keep all
cores busy and amortise thread start-up), capped at ``max_n``; then the product is repeated for ``seconds`` and the
best rate is kept (the least disturbed by other processes).

Bandwidth: the best time to sum a float32 tensor far larger than the caches (a pure read stream). It bounds
memory-bound work: optimizer updates, norms, element-wise ops, small-batch decoding.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class MatmulRate:
    dtype: str
    n: int  # the square matrices' side
    gflops: float  # best 2·n³ / seconds over the repeats, in 1e9 FLOP/s
    repeats: int


@dataclass(frozen=True)
class Ceilings:
    device: str
    fp32: MatmulRate
    bf16: MatmulRate
    bandwidth_gbs: float  # 1e9 bytes/s read
    bandwidth_mib: int

    def peak_gflops(self, precision: str) -> float:
        """The ceiling a training precision is measured against: fp32 for 32-true, bf16 otherwise."""
        return self.fp32.gflops if precision.startswith("32") else self.bf16.gflops


def _timer(device: str) -> Callable[[Callable[[], object]], float]:
    def timed(fn: Callable[[], object]) -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    return timed


def matmul_rate(dtype: torch.dtype, device: str = "cpu", *, seconds: float = 2.0, min_seconds: float = 0.1,
                max_n: int = 8192, start_n: int = 512) -> MatmulRate:
    timed = _timer(device)
    n = min(start_n, max_n)
    while True:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        out = torch.empty(n, n, device=device, dtype=dtype)
        timed(lambda: torch.matmul(a, b, out=out))  # first call: kernel selection, page faults
        once = timed(lambda: torch.matmul(a, b, out=out))
        if once >= min_seconds or n * 2 > max_n:
            break
        n *= 2
    repeats = max(1, min(50, int(seconds / max(once, 1e-6))))
    best = min([once] + [timed(lambda: torch.matmul(a, b, out=out)) for _ in range(repeats)])
    return MatmulRate(str(dtype).replace("torch.", ""), n, 2 * n**3 / best / 1e9, repeats + 1)


def read_bandwidth_gbs(n_mib: int, device: str = "cpu", repeats: int = 5) -> float:
    x = torch.ones(n_mib * 2**20 // 4, dtype=torch.float32, device=device)
    timed = _timer(device)
    timed(x.sum)
    best = min(timed(x.sum) for _ in range(repeats))
    return x.numel() * 4 / best / 1e9


def measure_ceilings(device: str = "cpu", *, seconds: float = 2.0, bandwidth_mib: int = 1024,
                     max_n: int | None = None) -> Ceilings:
    cap = max_n or (16384 if device == "cuda" else 8192)
    min_seconds = 0.02 if device == "cuda" else 0.1
    fp32 = matmul_rate(torch.float32, device, seconds=seconds, min_seconds=min_seconds, max_n=cap)
    bf16 = matmul_rate(torch.bfloat16, device, seconds=seconds, min_seconds=min_seconds, max_n=cap)
    return Ceilings(device, fp32, bf16, read_bandwidth_gbs(bandwidth_mib, device), bandwidth_mib)
