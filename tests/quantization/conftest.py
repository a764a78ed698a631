"""A tiny char model *trained* on real text (quantization error on random weights says nothing), saved as a training
checkpoint the way scratchllm.checkpoint writes one, plus a held-out slice of the text to measure perplexity on."""

from __future__ import annotations

import pytest
import torch
from pydoc_data.topics import topics

from scratchllm import checkpoint
from scratchllm.model import GPT, ModelConfig
from scratchllm.tokenizers import CharTokenizer

# Python's own help topics (pydoc_data, part of the standard library): English prose with code, fixed for a given
# Python, so editing the repository (e.g. README.md, what this once trained on) cannot move the measured numbers.
TEXT = "\n\n".join(topics[k] for k in sorted(topics))[:60_000]
SMALL = dict(context_length=64, n_layer=2, n_head=2, n_embd=64, mlp_hidden=128, dropout=0.0)


def held_out_nll(model: torch.nn.Module, ids: torch.Tensor, ctx: int = 64) -> float:
    """Mean next-token negative log-likelihood over ``ids`` in non-overlapping windows."""
    n = (len(ids) - 1) // ctx * ctx
    x, y = ids[:n].view(-1, ctx), ids[1 : n + 1].view(-1, ctx)
    with torch.inference_mode():
        _, loss = model(x, y)
    return float(loss)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``{"ckpt", "model", "tokenizer", "held_out"}``: 150 AdamW steps (batch 8) on the first 90% of ``TEXT``."""
    tokenizer = CharTokenizer(sorted(set(TEXT)))
    ids = torch.tensor(tokenizer.encode(TEXT), dtype=torch.long)
    split = int(0.9 * len(ids))
    train, held_out = ids[:split], ids[split:]
    torch.manual_seed(0)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    model = GPT(ModelConfig(vocab_size=tokenizer.vocab_size, name="tiny-pydoc", **SMALL))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        starts = torch.randint(0, len(train) - 65, (8,))
        x = torch.stack([train[s : s + 64] for s in starts])
        y = torch.stack([train[s + 1 : s + 65] for s in starts])
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.set_num_threads(before)
    model.eval()
    ckpt = {"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}
    checkpoint.stamp(ckpt, checkpoint.CheckpointMeta(format=checkpoint.FORMAT, model=model.config.to_dict(),
                                                     tokenizer=tokenizer.to_dict(), objective={"name": "lm"}))
    path = tmp_path_factory.mktemp("trained") / "model.ckpt"
    checkpoint.save(ckpt, path)
    return {"ckpt": path, "model": model, "tokenizer": tokenizer, "held_out": held_out}
