"""Run folders as training leaves them (TensorBoard events, result.json, .hydra/overrides.yaml), written here."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def make_run(folder: Path, train: list[tuple[int, float]], val: list[tuple[int, float]],
             overrides: list[str] | None = None, events: bool = True) -> Path:
    from torch.utils.tensorboard import SummaryWriter

    folder.mkdir(parents=True)
    if events:
        writer = SummaryWriter(str(folder / "tensorboard"))
        for step, value in train:
            writer.add_scalar("train/loss", value, step)
        for step, value in val:
            writer.add_scalar("val/loss", value, step)
        writer.close()
    curve = [{"step": s, "tokens_seen": 100 * s, "train_seconds": s / 10, "val_loss": v} for s, v in val]
    (folder / "result.json").write_text(json.dumps({"curve": curve}))
    if overrides is not None:
        (folder / ".hydra").mkdir()
        (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    return folder


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """A multirun folder with two jobs that differ in model.norm."""
    root = tmp_path / "logs" / "train" / "multiruns" / "2026-12-02_06-00-00"
    make_run(root / "0", [(10, 3.5), (20, 3.0), (30, 2.75)], [(15, 3.25), (30, 2.875)],
             ["model.norm=layernorm", "trainer.max_steps=30"])
    make_run(root / "1", [(10, 3.25), (20, 2.5), (30, 2.25)], [(15, 3.0), (30, 2.5)],
             ["model.norm=rmsnorm", "trainer.max_steps=30"])
    return root


@pytest.fixture
def trained_run(tmp_path: Path) -> Path:
    """A run folder with curves and a ``checkpoints/last.ckpt`` (tiny char model, RoPE + GQA, written the way
    scratchllm.checkpoint writes one), as ``what=attention run=<folder>`` reads it."""
    import torch

    from scratchllm import checkpoint
    from scratchllm.model import GPT, ModelConfig
    from scratchllm.tokenizers import CharTokenizer

    run = make_run(tmp_path / "logs" / "train" / "runs" / "r", [(10, 3.0), (20, 2.5)], [(20, 2.75)])
    tokenizer = CharTokenizer(list("\n !,.:?ABEMORTabdeghilmnorstuvwy"), unknown="replace")
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=tokenizer.vocab_size, context_length=32, n_layer=2, n_head=4, n_kv_head=2,
                            n_embd=32, mlp_hidden=64, position="rope", init_std=0.5, name="tiny-rope"))
    ckpt = {"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}
    checkpoint.stamp(ckpt, checkpoint.CheckpointMeta(format=checkpoint.FORMAT, model=model.config.to_dict(),
                                                     tokenizer=tokenizer.to_dict()))
    (run / "checkpoints").mkdir()
    checkpoint.save(ckpt, run / "checkpoints" / "last.ckpt")
    return run
