"""Tiny models for the evaluation tests: a random GPT (numbers checked against transformers), a GPT whose weights
are set by hand so that it knows every answer (a bigram table), and a training checkpoint on disk (the CLI)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from scratchllm.model import GPT, ModelConfig
from scratchllm.tokenizers import CharTokenizer

# The bigram model's alphabet: each character is followed by the next one (the last by the first).
ALPHABET = "abcdefgh\n"



def random_gpt(vocab_size: int, context_length: int = 16, seed: int = 0, **overrides) -> GPT:
    torch.manual_seed(seed)
    cfg = dict(vocab_size=vocab_size, context_length=context_length, n_layer=2, n_head=2, n_embd=32, init_std=0.3,
               tie_embeddings=False)
    return GPT(ModelConfig(**{**cfg, **overrides})).eval()


def bigram_gpt(tokenizer: CharTokenizer, pairs: list[tuple[int, int]] | None = None) -> GPT:
    """A GPT that predicts "the next character of ALPHABET after this one" (or, given ``pairs`` of token ids,
    ``b`` after ``a``) with near certainty.

    The blocks are zeroed (the residual stream passes through unchanged), positions add nothing, the embedding is
    one-hot and RMSNorm keeps it one-hot (times 3), so the head reads the current token alone: a bigram table.
    """
    if pairs is None:
        ids = [tokenizer.encode(c)[0] for c in ALPHABET]
        pairs = list(zip(ids, ids[1:] + ids[:1]))
    model = GPT(ModelConfig(vocab_size=tokenizer.vocab_size, context_length=64, n_layer=1, n_head=2, n_embd=32,
                            norm="rmsnorm", bias=False, tie_embeddings=False)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.norm_f.weight.fill_(1.0)
        model.tok_emb.weight[: tokenizer.vocab_size, : tokenizer.vocab_size] = torch.eye(tokenizer.vocab_size)
        for a, b in pairs:
            model.lm_head.weight[b, a] = 10.0
    return model


@pytest.fixture(scope="session")
def alphabet_tokenizer() -> CharTokenizer:
    return CharTokenizer(list(ALPHABET + "xyz "))


@pytest.fixture(scope="session")
def trained_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``logs/train/runs/r/checkpoints/last.ckpt`` written by a real Lightning ``Trainer`` after one step of a tiny
    char model whose vocabulary covers Shakespeare's plays (the format ``ckpt_path=last`` finds)."""
    import lightning as L
    from torch.utils.data import DataLoader

    from scratchllm.training.module import GPTLitModule

    root = tmp_path_factory.mktemp("trained")
    letters = "".join(map(chr, range(65, 91))) + "".join(map(chr, range(97, 123)))
    tokenizer = CharTokenizer(list("\n !',-.:;?" + letters), unknown="replace")
    torch.manual_seed(0)
    module = GPTLitModule(
        model=dict(vocab_size=tokenizer.vocab_size, context_length=32, n_layer=1, n_head=2, n_embd=16,
                   name="tiny-char"),
        optim=dict(lr=1e-3), scheduler=dict(warmup_steps=0, total_steps=1), tokenizer_config=tokenizer.to_dict(),
    )
    data = torch.randint(0, tokenizer.vocab_size, (2, 17))
    loader = DataLoader([{"input_ids": data[:, :-1], "labels": data[:, 1:]}], batch_size=None)
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(root))
    trainer.fit(module, loader)
    folder = root / "logs" / "train" / "runs" / "r" / "checkpoints"
    folder.mkdir(parents=True)
    trainer.save_checkpoint(folder / "last.ckpt")
    return root
