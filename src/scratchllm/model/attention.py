"""Causal self-attention, in two interchangeable implementations, with grouped KV heads and a KV cache.

Each position builds a query ("what am I looking for"), a key ("what do I contain") and a value ("what I pass
on"). The score between position i and j is q_i·k_j / √d. Why divide by √d: if q and k have unit-variance
components, their dot product has variance d, so without the scale the softmax of a wide head saturates to a
one-hot and its gradients vanish; dividing by √d keeps the scores at unit variance whatever the head size.

The causal mask sets the score of every j > i to −∞ before the softmax, so position i mixes only the values of
positions ≤ i. That is what lets one forward pass train all T next-token predictions at once without any
position seeing its own answer.

``attention="sdpa"`` calls torch's fused ``scaled_dot_product_attention`` (flash / memory-efficient kernels: the
T×T score matrix is never materialised). ``attention="explicit"`` spells out the textbook path and can keep the
attention weights for plots. Both compute the same function (tested to 1e-5).

Grouped-query attention (GQA, Ainslie et al. 2023): ``n_kv_head`` < ``n_head`` key/value heads, each shared by a
group of query heads. It shrinks the KV cache (what limits decoding speed and batch size) by n_head / n_kv_head
with little loss in quality; ``n_kv_head = 1`` is multi-query attention (MQA), ``n_kv_head = n_head`` plain MHA.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from scratchllm.errors import InputError
from scratchllm.model.config import ModelConfig
from scratchllm.model.layers import apply_rope
from scratchllm.model.linear import make_linear


class KVCache(nn.Module):
    """Pre-allocated keys and values of one layer: (batch, n_kv_head, max_len, head_dim) each.

    Only the KV heads are cached (GQA/MQA caches are n_head / n_kv_head times smaller). ``update`` writes the new
    positions in place and returns views of everything cached so far: no concatenation, no reallocation per token.
    """

    def __init__(
        self,
        batch_size: int,
        max_len: int,
        n_kv_head: int,
        head_dim: int,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        shape = (batch_size, n_kv_head, max_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.max_len = max_len

    def update(self, k: torch.Tensor, v: torch.Tensor, start_pos: int) -> tuple[torch.Tensor, torch.Tensor]:
        end = start_pos + k.shape[2]
        if end > self.max_len:
            raise InputError(
                f"the KV cache holds {self.max_len} positions but position {end - 1} was asked for; "
                f"allocate it with make_caches(batch, max_len={end}) or crop the sequence"
            )
        self.k[:, :, start_pos:end] = k
        self.v[:, :, start_pos:end] = v
        return self.k[:, :, :end], self.v[:, :, :end]


def causal_mask(q_len: int, k_len: int, device: torch.device) -> torch.Tensor:
    """Boolean (q_len, k_len) mask, True where attention is allowed. The queries are the *last* q_len positions
    of the k_len keys (bottom-right aligned), which is what a prefill after cached tokens needs."""
    offset = k_len - q_len
    rows = torch.arange(q_len, device=device).unsqueeze(1) + offset
    cols = torch.arange(k_len, device=device).unsqueeze(0)
    return cols <= rows


def decode_in_float32(q: torch.Tensor) -> bool:
    """Whether this step attends in float32 although the model runs in bf16/fp16: one query, on CPU.

    torch 2.13's CPU kernels are several times slower for one bf16 query against a long cache than for float32
    (SDPA over 1,024 cached GPT-2 positions: ~0.79 ms a layer in bf16, ~0.29 ms with the cast to float32 included;
    experiments/bench_decode_attention.py). The cast reads the cached keys and values once, and the float32 kernel
    then runs near memory speed. Only the attention is upcast: the weights and the cache keep their dtype, and
    the result is rounded back once. On GPUs bf16 kernels are fast, and training steps have many queries."""
    return q.shape[2] == 1 and q.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.n_kv_head = config.n_kv_head
        self.head_dim = config.head_dim
        self.implementation = config.attention
        self.dropout_p = config.dropout
        # q, k and v come from one fused projection: [n_head | n_kv_head | n_kv_head] heads of head_dim each.
        qkv_width = (config.n_head + 2 * config.n_kv_head) * config.head_dim
        self.qkv = make_linear(config.n_embd, qkv_width, config.bias)
        self.proj = make_linear(config.n_embd, config.n_embd, config.bias, residual=True)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.keep_attention = False  # explicit path only: store the last weights in ``last_attention``
        self.last_attention: torch.Tensor | None = None

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: KVCache | None = None,
        start_pos: int = 0,
    ) -> torch.Tensor:
        B, T, _ = x.shape
        hd = self.head_dim
        q, k, v = self.qkv(x).split([self.n_head * hd, self.n_kv_head * hd, self.n_kv_head * hd], dim=-1)
        q = q.view(B, T, self.n_head, hd).transpose(1, 2)  # (B, nh, T, hd)
        k = k.view(B, T, self.n_kv_head, hd).transpose(1, 2)  # (B, nkv, T, hd)
        v = v.view(B, T, self.n_kv_head, hd).transpose(1, 2)
        if rope is not None:
            cos, sin = rope
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.update(k, v, start_pos)
        dtype, upcast = q.dtype, decode_in_float32(q)
        if upcast:
            q, k, v = q.float(), k.float(), v.float()
        if self.implementation == "sdpa":
            y = self._sdpa(q, k, v)
        else:
            y = self._explicit(q, k, v)
        if upcast:
            y = y.to(dtype)
        y = y.transpose(1, 2).reshape(B, T, self.n_head * hd)
        return self.resid_dropout(self.proj(y))

    def _sdpa(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q_len, k_len = q.shape[2], k.shape[2]
        dropout = self.dropout_p if self.training else 0.0
        gqa = self.n_kv_head != self.n_head
        if q_len == k_len:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout, enable_gqa=gqa)
        if q_len == 1:  # one decode step: the newest token may see every cached position
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, enable_gqa=gqa)
        mask = causal_mask(q_len, k_len, q.device)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, enable_gqa=gqa)

    def _explicit(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.n_kv_head != self.n_head:  # each KV head serves a contiguous group of query heads
            repeat = self.n_head // self.n_kv_head
            k = k.repeat_interleave(repeat, dim=1)
            v = v.repeat_interleave(repeat, dim=1)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)  # (B, nh, Tq, Tk)
        mask = causal_mask(q.shape[2], k.shape[2], q.device)
        scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores.float(), dim=-1).to(q.dtype)
        if self.keep_attention:
            self.last_attention = weights.detach()
        if self.training and self.dropout_p > 0:
            weights = F.dropout(weights, p=self.dropout_p)
        return weights @ v
