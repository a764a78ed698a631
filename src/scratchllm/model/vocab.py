"""Grow a built GPT's vocabulary, e.g. after ``tokenizer.add_special_tokens(["<|im_start|>", "<|im_end|>"])``.

    ids = tok.add_special_tokens(["<|im_start|>", "<|im_end|>", "<|pad|>"])
    grow_vocab(model, tok.vocab_size)           # before the optimizer is built: it holds the old parameters

What changes, and what must not:

- the rows of the old ids, in the token embedding and in the head, stay bit-identical, so every logit of the old
  vocabulary for a text of old ids is exactly what it was;
- each new row starts as the mean of the old rows (why: below);
- ``model.config`` becomes a copy with the new ``vocab_size``. The matrices keep their padding to a multiple of
  ``vocab_multiple``: a new id takes a padding row when there is one, and the matrices are re-allocated, one
  multiple larger, only when the padding runs out (the new padding rows are zero). The forward pass gives the
  padding's logits −∞ as always;
- a tied model stays tied (one matrix), an untied one gets its head's new rows from the head's own mean.

Why the mean (Hewitt, "Initializing new word embeddings for pretrained language models", 2021): a new token
should not change what the model already says before fine-tuning teaches it the token. With head row w̄ = the
mean of the old rows, the new logit for a hidden state h is h·w̄ = the mean of the old logits, and by Jensen
exp(mean logit) ≤ mean exp(logit) = Z/n. So each of k new tokens takes at most a 1/n share of the old mass: the
loss on old targets rises by at most log(1 + k/n), and the new tokens are not sampled out of nowhere. A random row
can instead get a large logit and swamp the distribution. As an input the mean is the "average token", which the
model reads as a blend of what it knows rather than as noise it has never seen.
"""

from __future__ import annotations

import torch
from torch import nn

from scratchllm.errors import ConfigError
from scratchllm.model.config import ModelConfig
from scratchllm.model.gpt import GPT
from scratchllm.model.linear import is_plain_float_linear


@torch.no_grad()
def grow_vocab(model: GPT, vocab_size: int) -> GPT:
    """Grow ``model`` (in place) to ``vocab_size`` ids; returns it. The same size is a no-op."""
    cfg = model.config
    if vocab_size < cfg.vocab_size:
        raise ConfigError(f"cannot shrink the model's vocabulary from {cfg.vocab_size} to {vocab_size} ids: ids "
                          "the model was trained on would lose their rows; use the tokenizer it was trained with")
    if vocab_size == cfg.vocab_size:
        return model
    if not is_plain_float_linear(model.lm_head):
        raise ConfigError("grow the vocabulary before quantizing the model or adding adapters: its head is no "
                          "longer a plain float linear")
    new_cfg = cfg.replace(vocab_size=vocab_size)
    model.tok_emb.weight = _grown(model.tok_emb.weight, cfg.vocab_size, new_cfg)
    model.tok_emb.num_embeddings = new_cfg.padded_vocab_size
    if new_cfg.tie_embeddings:
        model.lm_head.weight = model.tok_emb.weight
    else:
        model.lm_head.weight = _grown(model.lm_head.weight, cfg.vocab_size, new_cfg)
    model.lm_head.out_features = new_cfg.padded_vocab_size
    model.config = new_cfg  # a copy: a config object shared with another model is left alone
    return model


def _grown(weight: torch.Tensor, old_vocab: int, cfg: ModelConfig) -> nn.Parameter:
    """``weight`` (padded rows × n_embd) with rows ``old_vocab .. cfg.vocab_size-1`` set to the mean of the old
    rows, re-allocated only when the padded size grows."""
    mean = weight[:old_vocab].float().mean(dim=0).to(weight.dtype)  # in float32: a bf16 sum of 50k rows drifts
    padded = cfg.padded_vocab_size
    if padded == weight.shape[0]:
        out = weight.detach().clone()  # a new Parameter below; the old tensor may be shared (an optimizer's)
    else:
        out = weight.new_zeros(padded, weight.shape[1])
        out[:old_vocab] = weight[:old_vocab]
    out[old_vocab:cfg.vocab_size] = mean
    return nn.Parameter(out, requires_grad=weight.requires_grad)
