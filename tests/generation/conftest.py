"""Tiny random GPTs for the generation tests.

Untied embeddings and a large init std make a random model's greedy output varied (with tied weights and the
default 0.02 std it mostly repeats its input token), so "cached equals uncached" compares real sequences.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from scratchllm.model import GPT, ModelConfig

TINY: dict[str, Any] = dict(
    vocab_size=65, context_length=16, n_layer=2, n_head=4, n_embd=32, mlp_hidden=64, init_std=0.5,
    tie_embeddings=False,
)



def make_model(seed: int = 0, **overrides: Any) -> GPT:
    torch.manual_seed(seed)
    return GPT(ModelConfig(**{**TINY, **overrides})).eval()


@pytest.fixture
def tiny_model() -> Callable[..., GPT]:
    """``tiny_model(position="rope", n_kv_head=2)`` → a freshly initialised tiny GPT in eval mode."""
    return make_model


# ------------------------------------------------------------------------ checkpoints on disk (CLI, loading)
CHARS = "\n !',.:;?ERMOadehilmnorstuwé"


@pytest.fixture(scope="session")
def trained_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder laid out like a training run's: ``logs/train/runs/r/checkpoints/last.ckpt`` written by a real
    Lightning ``Trainer`` after one optimizer step of a tiny char model (the checkpoint format generation reads)."""
    import lightning as L
    from torch.utils.data import DataLoader

    from scratchllm.tokenizers import CharTokenizer
    from scratchllm.training.module import GPTLitModule

    root = tmp_path_factory.mktemp("trained")
    tokenizer = CharTokenizer(list(CHARS), unknown="replace")
    torch.manual_seed(0)
    module = GPTLitModule(
        model=dict(TINY, vocab_size=tokenizer.vocab_size, context_length=32, name="tiny-char"),
        optim=dict(lr=1e-3),
        scheduler=dict(warmup_steps=0, total_steps=1),
        tokenizer_config=tokenizer.to_dict(),
    )
    data = torch.randint(0, tokenizer.vocab_size, (4, 17))
    loader = DataLoader([{"input_ids": data[:, :-1], "labels": data[:, 1:]}], batch_size=None)  # one batch dict
    trainer = L.Trainer(
        max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=str(root),
    )
    trainer.fit(module, loader)
    folder = root / "logs" / "train" / "runs" / "r" / "checkpoints"
    folder.mkdir(parents=True)
    trainer.save_checkpoint(folder / "last.ckpt")
    return root


@pytest.fixture(scope="session")
def trained_ckpt(trained_root: Path) -> Path:
    return trained_root / "logs" / "train" / "runs" / "r" / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def gpt2_vocab_hf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Hugging Face GPT-2 folder (save_hf) of a tiny random model with GPT-2's 50,257-id vocabulary."""
    from scratchllm.interop.hf import save_hf

    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=50257, context_length=32, n_layer=1, n_head=2, n_embd=16, init_std=0.5))
    return save_hf(model, tmp_path_factory.mktemp("hf") / "gpt2-tiny")


@pytest.fixture(scope="session")
def char_hf_export(trained_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The trained char model exported to Hugging Face (a folder that names no tokenizer), and a data cache folder
    holding its ``tokenizer.json`` as data preparation writes it: ``(hf_folder, cache_folder)``."""
    from scratchllm.generation.loading import load_for_generation
    from scratchllm.interop.hf import save_hf

    model, tokenizer = load_for_generation(trained_ckpt, device="cpu", dtype="float32")
    root = tmp_path_factory.mktemp("export")
    cache = root / "data_cache" / "tinyshakespeare-char-0123abcd"
    cache.mkdir(parents=True)
    tokenizer.save(cache / "tokenizer.json")
    return save_hf(model, root / "hf-char"), cache
