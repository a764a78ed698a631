"""The small pieces of a transformer block: normalisation, rotary positions and the feed-forward MLP.

Normalisation. Every sub-layer reads a normalised copy of the residual stream ("pre-norm", GPT-2 onwards), which
keeps activations on a fixed scale however deep the stack. LayerNorm re-centres (subtracts the mean) and
re-scales; RMSNorm (Zhang & Sennrich 2019, used by Llama) only re-scales by the root-mean-square. Dropping the
mean costs nothing in quality in practice, saves a reduction, and has no bias to learn.

Rotary position embedding (RoPE, Su et al. 2021). Instead of adding a learned vector per position, RoPE rotates
each (even, odd)-paired coordinate of the queries and keys by an angle proportional to the position, with a
different frequency per pair. A rotation by angle m·θ dotted with a rotation by n·θ depends only on (m − n)·θ, so
attention scores depend on *relative* position, and no parameters are learned. We use the "rotate half" layout of
Hugging Face's Llama (pair i with i + head_dim/2), so imported Llama weights need no permutation.

MLP. GPT-2's is Linear → GELU → Linear with a 4× wider hidden layer. SwiGLU (Shazeer 2020) gates one projection
by the SiLU of another: ``down(silu(gate(x)) * up(x))``. It has three matrices instead of two, so its hidden size
is usually 8/3·d to keep the parameter count the same; it trains to a lower loss per FLOP.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from scratchllm.model.config import ModelConfig
from scratchllm.model.linear import make_linear


class RMSNorm(nn.Module):
    """x / rms(x) * weight, computed in fp32 (as Llama does) so bf16 activations do not lose the scale."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)


def build_norm(config: ModelConfig) -> nn.Module:
    if config.norm == "rmsnorm":
        return RMSNorm(config.n_embd, eps=config.norm_eps)
    return nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias)


def rope_cos_sin(
    positions: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables of shape (T, head_dim) for the given integer positions.

    Computed on the fly (a T × head_dim/2 outer product, negligible next to the matmuls): no buffer to keep in
    sync with devices, checkpoints or the meta device, and any position works — also past the training context.
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim))
    freqs = torch.outer(positions.to(torch.float32), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x of shape (B, heads, T, head_dim): pairs (i, i + head_dim/2) turn by the angle of their position."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    rotated = torch.cat((-x2, x1), dim=-1)
    return x * cos + rotated * sin


class MLP(nn.Module):
    """Position-wise feed-forward. ``fc`` holds [gate; up] stacked for SwiGLU: one matmul instead of two."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.kind = config.mlp
        width = 2 * config.mlp_hidden if self.kind == "swiglu" else config.mlp_hidden
        self.fc = make_linear(config.n_embd, width, config.bias)
        self.proj = make_linear(config.mlp_hidden, config.n_embd, config.bias, residual=True)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        if self.kind == "swiglu":
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        else:
            h = gelu_tanh(h)
        return self.dropout(self.proj(h))


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GPT-2's GELU, the tanh approximation: 0.5·x·(1 + tanh(z)) with z = √(2/π)·(x + 0.044715·x³).

    Using this approximation exactly is what makes imported GPT-2 weights match. Under torch.compile it is written
    as the identical x·sigmoid(2z) (0.5·(1 + tanh z) = sigmoid(2z)): TorchInductor's CPU code vectorises sigmoid
    far better than tanh, so the fused forward + backward runs ~1.5× faster (max difference 5e-7). Eager keeps
    ATen's own kernel, which is the faster one there."""
    if torch.compiler.is_compiling():
        return gelu_tanh_as_sigmoid(x)
    return F.gelu(x, approximate="tanh")


def gelu_tanh_as_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """x·sigmoid(2·√(2/π)·(x + 0.044715·x³)): the tanh-approximate GELU, written for TorchInductor."""
    return x * torch.sigmoid(1.5957691216057308 * (x + 0.044715 * x * x * x))
