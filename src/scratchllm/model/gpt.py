"""The GPT: token embedding → n_layer pre-norm transformer blocks → final norm → linear head over the vocabulary.

One class builds GPT-2, Llama-style and everything in between; ``ModelConfig`` picks the variant.

Why the residual projections get a smaller init: each block *adds* its attention and MLP outputs to the residual
stream, so with 2·n_layer additions of unit-scale noise the stream's variance grows with depth. GPT-2 scales the
init std of the two output projections (``attn.proj``, ``mlp.proj``) by 1/√(2·n_layer) so the stream starts at the
same scale however deep the model is. Those two are marked where they are built (``make_linear(..., residual=True)``),
so the rule does not depend on what a module is called.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from scratchllm.errors import InputError
from scratchllm.model.attention import CausalSelfAttention, KVCache
from scratchllm.model.config import ModelConfig
from scratchllm.model.layers import MLP, RMSNorm, build_norm, rope_cos_sin
from scratchllm.model.linear import is_residual_projection, make_linear

IGNORE_INDEX = -100


class Block(nn.Module):
    """x + attn(norm(x)), then x + mlp(norm(x)): each sub-layer reads a normalised copy, writes a residual."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.norm1 = build_norm(config)
        self.attn = CausalSelfAttention(config)
        self.norm2 = build_norm(config)
        self.mlp = MLP(config)
        self.checkpoint_attention = config.checkpointing == "selective"

    def _attention(self, x: torch.Tensor, rope, cache: KVCache | None, start_pos: int) -> torch.Tensor:
        return self.attn(self.norm1(x), rope, cache, start_pos)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: KVCache | None = None,
        start_pos: int = 0,
    ) -> torch.Tensor:
        if self.checkpoint_attention and cache is None and torch.is_grad_enabled():
            # selective checkpointing: the attention sub-layer's tensors (q, k, v, its output) are rebuilt in the
            # backward pass; the RNG state is restored first, so dropout draws the same masks
            x = x + checkpoint(self._attention, x, rope, None, start_pos, use_reentrant=False)
        else:
            x = x + self._attention(x, rope, cache, start_pos)
        return x + self.mlp(self.norm2(x))


def _embedding(num: int, dim: int) -> nn.Embedding:
    """``nn.Embedding``, except on the meta device (a quantized file's skeleton, a 10B shape for the planner): there
    its own init is skipped, because the first ``normal_`` on a meta tensor imports torch's meta kernels (~800
    modules, sympy included: ~70 MB resident, more than half of gpt2-124m's int8 weights). On a real device the
    init runs as before, so a seed gives the same weights (``GPT.reset_parameters`` draws them again anyway)."""
    if torch.empty(0).is_meta:  # under ``with torch.device("meta")``
        return nn.Embedding(num, dim, _weight=torch.empty(num, dim))
    return nn.Embedding(num, dim)


class GPT(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        padded = config.padded_vocab_size
        self.tok_emb = _embedding(padded, config.n_embd)
        self.pos_emb = _embedding(config.context_length, config.n_embd) if config.position == "learned" else None
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.norm_f = build_norm(config)
        self.lm_head = make_linear(config.n_embd, padded, False)
        if config.tie_embeddings:
            # One matrix both reads tokens in and scores them out (Press & Wolf 2017): fewer parameters, and
            # rare tokens' input vectors get gradient from every output softmax.
            self.lm_head.weight = self.tok_emb.weight
        self.reset_parameters()

    # ---------------------------------------------------------------------------------------------- init
    @torch.no_grad()
    def reset_parameters(self) -> None:
        if any(p.is_meta for p in self.parameters()):  # nothing to fill (see _embedding)
            return
        std = self.config.init_std
        residual_std = std / math.sqrt(2 * self.config.n_layer)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, mean=0.0, std=residual_std if is_residual_projection(module) else std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=std)
            elif isinstance(module, (nn.LayerNorm, RMSNorm)):
                module.reset_parameters()

    # ------------------------------------------------------------------------------------------- forward
    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        caches: list[KVCache] | None = None,
        start_pos: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx: (B, T) token ids → (logits (B, T, vocab_size), mean cross-entropy or None).

        ``targets`` positions equal to -100 are ignored. With ``caches`` (one ``KVCache`` per block) the T tokens
        are taken to sit at positions start_pos … start_pos+T-1 and attend to everything cached before them.
        """
        cfg = self.config
        B, T = idx.shape
        if start_pos + T > cfg.context_length:
            raise InputError(
                f"sequence of {start_pos + T} positions exceeds model.context_length={cfg.context_length}; "
                f"crop the input to the last {cfg.context_length} tokens or use a model with a longer context"
            )
        # On CUDA this check would sync every step, and under torch.compile it would break the graph (a data-
        # dependent Python int); there the embedding still rejects out-of-range ids and the data module checks the
        # shards' vocabulary.
        if not idx.is_cuda and not torch.compiler.is_compiling():
            if idx.numel():
                lo, hi = int(idx.min()), int(idx.max())
                if lo < 0 or hi >= cfg.vocab_size:
                    raise InputError(
                        f"token id {lo if lo < 0 else hi} is outside the model's vocabulary of {cfg.vocab_size} (ids 0..{cfg.vocab_size - 1}); "
                        f"the tokenizer and model.vocab_size must agree"
                    )
        x = self.tok_emb(idx)
        positions = torch.arange(start_pos, start_pos + T, device=idx.device)
        rope = None
        if self.pos_emb is not None:
            x = x + self.pos_emb(positions)
        else:
            rope = rope_cos_sin(positions, cfg.head_dim, cfg.rope_theta, x.dtype)
        x = self.drop(x)
        full_checkpointing = cfg.checkpointing == "full" and caches is None and torch.is_grad_enabled()
        for i, block in enumerate(self.blocks):
            if full_checkpointing:
                # keep only each block's input; its activations are recomputed during the backward pass
                x = checkpoint(block, x, rope, None, start_pos, use_reentrant=False)
            else:
                x = block(x, rope, caches[i] if caches is not None else None, start_pos)
        x = self.norm_f(x)
        logits = self.lm_head(x)
        if cfg.padded_vocab_size > cfg.vocab_size:
            # Padding columns get −∞: softmax gives them exactly zero mass, so the loss equals the loss over the
            # real vocabulary (no copy of the logits is made to slice them).
            logits[..., cfg.vocab_size :] = float("-inf")
        loss = None
        if targets is not None:
            loss = F.cross_entropy(
                logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=IGNORE_INDEX
            )
        return logits[..., : cfg.vocab_size], loss

    # -------------------------------------------------------------------------------------------- helpers
    def make_caches(
        self, batch_size: int, max_len: int | None = None, *, dtype: torch.dtype | None = None
    ) -> list[KVCache]:
        """One pre-allocated ``KVCache`` per block, in the activations' dtype and on their device.

        Every layer keeps the residual stream's dtype (a converted linear, e.g. int8 weights, returns its input's
        dtype) and the stream is in the dtype the model was cast to; the final norm's weight tells it: a float
        tensor in every model, which no converter replaces (a linear's weight may be integer or packed, and a
        quantized token embedding has no float matrix at all)."""
        ref = self.norm_f.weight
        return [
            KVCache(
                batch_size,
                max_len or self.config.context_length,
                self.config.n_kv_head,
                self.config.head_dim,
                dtype=dtype or ref.dtype,
                device=ref.device,
            )
            for _ in self.blocks
        ]

    @torch.no_grad()
    def attention_maps(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """Attention weights (B, n_head, T, T) of every layer for ``idx``; needs ``attention="explicit"``."""
        if self.config.attention != "explicit":
            raise InputError("attention maps need model.attention=explicit (SDPA never materialises the weights)")
        layers = [block.attn for block in self.blocks]
        for attn in layers:
            attn.keep_attention = True
        try:
            self(idx)
            return [attn.last_attention for attn in layers]  # type: ignore[misc]
        finally:
            for attn in layers:
                attn.keep_attention = False
                attn.last_attention = None
