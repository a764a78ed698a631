"""Rotary position embedding at the function level: relative-position dependence, layout, and basic geometry."""

from __future__ import annotations

import pytest
import torch

from scratchllm.model.layers import apply_rope, rope_cos_sin

HEAD_DIM = 16
THETA = 10000.0


def _rot(x: torch.Tensor, pos: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Rotate a (head_dim,) vector as if it sat at position ``pos`` (apply_rope wants (B, heads, T, hd))."""
    cos, sin = rope_cos_sin(torch.tensor([pos]), HEAD_DIM, THETA, dtype)
    return apply_rope(x.view(1, 1, 1, -1), cos, sin).view(-1)


@pytest.mark.parametrize("m,n,shift", [(0, 0, 5), (3, 1, 7), (1, 3, 100), (10, 2, 37), (0, 63, 1000)])
def test_scores_depend_only_on_relative_position(m: int, n: int, shift: int) -> None:
    q, k = torch.randn(HEAD_DIM, dtype=torch.float64), torch.randn(HEAD_DIM, dtype=torch.float64)
    before = _rot(q, m) @ _rot(k, n)
    after = _rot(q, m + shift) @ _rot(k, n + shift)
    # cos/sin are computed in fp32 inside rope_cos_sin, so the shared angle is exact only to fp32 rounding.
    torch.testing.assert_close(before, after, rtol=1e-5, atol=1e-5)


def test_scores_do_depend_on_the_offset() -> None:
    q, k = torch.randn(HEAD_DIM, dtype=torch.float64), torch.randn(HEAD_DIM, dtype=torch.float64)
    scores = torch.stack([_rot(q, 5) @ _rot(k, n) for n in range(6)])
    assert scores.unique().numel() == 6  # every relative distance gives a different score


def test_batched_positions_match_single_positions() -> None:
    x = torch.randn(2, 3, 10, HEAD_DIM)
    positions = torch.arange(4, 14)
    cos, sin = rope_cos_sin(positions, HEAD_DIM, THETA, torch.float32)
    assert cos.shape == sin.shape == (10, HEAD_DIM)
    out = apply_rope(x, cos, sin)
    for t in range(10):
        c, s = rope_cos_sin(positions[t : t + 1], HEAD_DIM, THETA, torch.float32)
        torch.testing.assert_close(out[:, :, t : t + 1], apply_rope(x[:, :, t : t + 1], c, s))


def test_rotate_half_layout_against_complex_reference() -> None:
    """Pair (i, i + d/2) is one complex number rotated by pos · theta^(-2i/d) (HF Llama's layout)."""
    x = torch.randn(HEAD_DIM, dtype=torch.float64)
    for pos in (0, 1, 7, 250):
        freqs = THETA ** (-torch.arange(0, HEAD_DIM, 2, dtype=torch.float64) / HEAD_DIM)
        z = torch.complex(x[: HEAD_DIM // 2], x[HEAD_DIM // 2 :]) * torch.polar(torch.ones_like(freqs), pos * freqs)
        expected = torch.cat([z.real, z.imag])
        torch.testing.assert_close(_rot(x, pos), expected, rtol=1e-5, atol=1e-5)


def test_position_zero_is_identity_and_rotation_keeps_norm() -> None:
    x = torch.randn(HEAD_DIM, dtype=torch.float64)
    torch.testing.assert_close(_rot(x, 0), x)
    for pos in (1, 17, 4000):
        torch.testing.assert_close(_rot(x, pos).norm(), x.norm())


def test_dtype_follows_request() -> None:
    cos, sin = rope_cos_sin(torch.arange(4), HEAD_DIM, THETA, torch.bfloat16)
    assert cos.dtype == sin.dtype == torch.bfloat16
