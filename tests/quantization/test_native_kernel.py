"""scratchllm's int8 decode kernel (quantization/native.py, kernels/int8_matvec.cpp) against the dequantise-then-
matmul reference, and the choice between it and torch's kernel."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import scratchllm.quantization.int8 as int8
from scratchllm.quantization import Int8Linear, native

KERNEL, WHY = native.status()
needs_kernel = pytest.mark.skipif(KERNEL is None, reason=f"int8 decode uses {WHY}")


def _case(rows: int, out_f: int, in_f: int, dtype: torch.dtype, bias: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(-127, 128, (out_f, in_f), dtype=torch.int8, generator=g)
    scales = (torch.rand(out_f, generator=g) / 50 + 1e-3).to(dtype)
    b = torch.randn(out_f, generator=g).to(dtype) if bias else None
    x = torch.randn(rows, in_f, generator=g).to(dtype)
    return x, q, scales, b


@needs_kernel
@pytest.mark.parametrize("rows,out_f,in_f", [
    (1, 64, 128),      # whole blocks of 4 rows and 32 columns
    (3, 37, 770),      # a last block of 1 row, a tail of 2 columns
    (1, 50257, 33),    # GPT-2's vocabulary: many blocks, a 1-column tail
    (2, 5, 20000),     # wider than one int32 chunk (8192 columns): the sums move to float between chunks
])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("bias", [True, False])
def test_kernel_matches_the_dequantised_reference(rows, out_f, in_f, dtype, bias):
    x, q, scales, b = _case(rows, out_f, in_f, dtype, bias)
    expected = int8.reference_int8_linear(x.float(), q, scales.float(), None if b is None else b.float())
    y = KERNEL(x, q, scales, b)
    assert y.dtype == dtype and y.shape == (rows, out_f)
    # float32: only the activations' 15-bit rounding (max|x| / 16383 a step); bf16: the output's own rounding
    tol = 2e-4 if dtype == torch.float32 else 8e-3
    assert ((y.float() - expected).abs().max() / expected.abs().max()).item() < tol


def test_the_kernel_is_built_wherever_the_cpu_and_tools_allow_it():
    """Where nothing rules it out, a build that fails is a bug: it must not pass as a skip of every test here."""
    from scratchllm.machine import cpu_flags

    if native._why_not(cpu_flags()) is None:
        assert KERNEL is not None, WHY


@needs_kernel
def test_sums_that_would_overflow_int32_are_exact():
    """Every product at its largest (16383 · 127) over 20,000 columns is 4.2e10, 19x what an int32 holds: the
    kernel moves its sums to float every 8,192 columns. A kernel without that returns garbage here."""
    K = 20000
    q = torch.full((4, K), 127, dtype=torch.int8)
    x = torch.ones(1, K)
    y = KERNEL(x, q, torch.ones(4), None)
    torch.testing.assert_close(y, torch.full((1, 4), 127.0 * K), rtol=1e-5, atol=0)


@needs_kernel
def test_non_finite_activations_give_nan_like_the_reference():
    x, q, scales, b = _case(2, 8, 64, torch.float32, True)
    x[0, 3] = float("nan")
    x[1, 5] = float("inf")
    y = KERNEL(x, q, scales, b)
    assert torch.isnan(y).all()
    tiny = KERNEL(torch.full((1, 64), 1e-38), q, scales, b)  # below any scale: the bias alone, not inf/NaN
    torch.testing.assert_close(tiny, b.view(1, 8))


@needs_kernel
def test_kernel_keeps_leading_dimensions_and_zero_rows():
    x, q, scales, b = _case(1, 16, 64, torch.float32, True)
    y = KERNEL(x.view(1, 1, 64), q, scales, b)
    assert y.shape == (1, 1, 16)
    zero = KERNEL(torch.zeros(1, 64), q, scales, b)  # an all-zero row has no scale to divide by: just the bias
    torch.testing.assert_close(zero, b.view(1, 16))


@needs_kernel
def test_int8_linear_decodes_with_the_kernel_and_prefills_without(monkeypatch):
    layer = Int8Linear.from_linear(torch.nn.Linear(96, 48)).to(torch.bfloat16)
    one = torch.randn(1, 1, 96, dtype=torch.bfloat16)
    expected = int8.reference_int8_linear(one.float(), layer.qweight, layer.scales.float(), layer.bias.float())
    monkeypatch.setattr(torch.ops.aten, "_weight_int8pack_mm", lambda *a: pytest.fail("torch's kernel was used"))
    torch.testing.assert_close(layer(one).float(), expected, atol=2e-2, rtol=2e-2)
    monkeypatch.undo()
    many = torch.randn(2, 8, 96, dtype=torch.bfloat16)  # 16 rows: a prefill, torch's kernel
    monkeypatch.setattr(int8, "int8_matvec", lambda: pytest.fail("the decode kernel was used for a prefill"))
    torch.testing.assert_close(layer(many).float(), int8.reference_int8_linear(
        many.float(), layer.qweight, layer.scales.float(), layer.bias.float()), atol=3e-2, rtol=3e-2)


def test_a_cpu_without_vnni_or_an_opt_out_uses_torchs_kernel(monkeypatch):
    monkeypatch.setenv(native.ENV, "auto")
    no_vnni = frozenset({"avx2", "fma", "avx512f"})
    assert "avx512bw" in native._why_not(no_vnni) and "avx512_vnni" in native._why_not(no_vnni)
    monkeypatch.setenv(native.ENV, "torch")
    assert native._why_not(frozenset(native.CPU_FLAGS)) == f"{native.ENV}=torch"


def test_the_opt_out_reaches_a_fresh_process():
    """``SCRATCHLLM_INT8_KERNEL=torch`` (the benchmark's A/B switch) is read when a process first decodes."""
    code = "from scratchllm.quantization import native; print(native.status()[1])"
    env = {**os.environ, native.ENV: "torch"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"torch's _weight_int8pack_mm: {native.ENV}=torch"


def test_inputs_that_need_gradients_take_the_reference(monkeypatch):
    """Neither int8 kernel has a backward (torch's raised 'derivative … not implemented'): an input that requires
    grad (an adapter trained on an int8 base) goes through dequantise-then-matmul, whose gradient autograd knows."""
    layer = Int8Linear.from_linear(torch.nn.Linear(32, 16))
    monkeypatch.setattr(int8, "int8_matvec", lambda: pytest.fail("the kernel has no backward"))
    x = torch.randn(1, 32, requires_grad=True)
    layer(x).sum().backward()
    assert x.grad is not None and x.grad.shape == (1, 32)
