"""Look inside one forward pass: each token's probability (with the alternatives the model preferred) and every
layer's attention weights. Shared by the playground (``/api/inspect``) and the plots (``scratchllm.plot``).

**Attention for any variant.** ``attention="sdpa"`` never materialises the T×T weights (that is its point), and
``GPT.attention_maps`` refuses it. Both implementations compute the same function (tested to 1e-5), so for one
inspection forward we switch every attention layer to the explicit path and ask it to keep its weights
(``CausalSelfAttention.keep_attention``), then put everything back: the model's own code and its default path
are untouched. GQA/MQA layers report one map per *query* head (the explicit path repeats the shared KV heads).

**Probabilities** are the model's raw next-token distribution (softmax of the logits, temperature 1, no
filters): what the model believes, not what a sampler with top-k/top-p then did with it. Position i's entry is
the probability of token i given tokens 0..i-1, so the first token has none.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import nn

from scratchllm.errors import InputError


@contextmanager
def _keeping_attention(model: nn.Module) -> Iterator[list[nn.Module]]:
    layers = [block.attn for block in model.blocks]
    saved = [(attn.implementation, attn.keep_attention) for attn in layers]
    for attn in layers:
        attn.implementation, attn.keep_attention = "explicit", True
    try:
        yield layers
    finally:
        for attn, (implementation, keep) in zip(layers, saved):
            attn.implementation, attn.keep_attention, attn.last_attention = implementation, keep, None


@dataclass
class Inspection:
    """One forward pass over ``ids`` (B=1), seen from the outside.

    probs: (T, V) float32 next-token distributions (row i predicts token i+1).
    attention: (n_layer, n_head, T, T) float32 weights, row = query position, column = key position.
    """

    ids: list[int]
    probs: torch.Tensor
    attention: torch.Tensor | None

    def token_probability(self, i: int) -> float | None:
        """P(token i | tokens before it); None for the first token (nothing predicted it)."""
        return None if i == 0 else float(self.probs[i - 1, self.ids[i]])

    def alternatives(self, i: int, k: int = 5) -> list[tuple[int, float]]:
        """The k most likely tokens at position i (what the model expected instead of token i), best first."""
        if i == 0:
            return []
        values, index = torch.topk(self.probs[i - 1], min(k, self.probs.shape[-1]))
        return [(int(t), float(p)) for t, p in zip(index, values)]


@torch.no_grad()
def inspect(model: nn.Module, ids: Sequence[int], *, attention: bool = True) -> Inspection:
    """Run ``model`` once over ``ids`` (at most ``context_length`` of them) and keep probabilities and attention."""
    ids = [int(t) for t in ids]
    context = model.config.context_length
    if not ids:
        raise InputError("nothing to inspect: give at least one token")
    if len(ids) > context:
        raise InputError(f"{len(ids)} tokens are more than the model's context of {context}; inspect the last "
                         f"{context} (the model never sees more at once)")
    device = next(model.parameters()).device
    idx = torch.tensor([ids], dtype=torch.long, device=device)
    was_training = model.training
    model.eval()
    try:
        if attention:
            with _keeping_attention(model) as layers:
                logits, _ = model(idx)
                maps = torch.stack([attn.last_attention[0].float() for attn in layers])  # (L, H, T, T)
        else:
            logits, _ = model(idx)
            maps = None
    finally:
        model.train(was_training)
    probs = torch.softmax(logits[0].float(), dim=-1)
    return Inspection(ids=ids, probs=probs.cpu(), attention=None if maps is None else maps.cpu())
