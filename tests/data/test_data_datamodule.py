"""ShardDataModule: prepare/setup/batches, errors, pickling, and exact data resume through a real Trainer."""

from __future__ import annotations

import pickle

import lightning as L
import pytest
import torch

from scratchllm.data import ShakespearePlays, ShardDataModule, TextFiles
from scratchllm.errors import DataError


def _xy(batch):
    """A batch dict as (inputs, labels)."""
    return batch["input_ids"], batch["labels"]


@pytest.fixture
def corpus(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(5):
        (src / f"{i}.txt").write_text(f"The quick brown fox {i} jumps over the lazy dog.\n" * 30)
    return TextFiles(str(src), val_fraction=0.2)


def _dm(corpus, tmp_path, **kw) -> ShardDataModule:
    args = dict(tokenizer="char", batch_size=4, context_length=16, cache_dir=str(tmp_path / "cache"))
    args.update(kw)
    return ShardDataModule(corpus, **args)


def test_prepare_setup_one_batch(corpus, tmp_path) -> None:
    dm = _dm(corpus, tmp_path)
    dm.prepare_data()
    dm.setup("fit")
    tok = dm.tokenizer
    assert tok.name == "char" and tok.vocab_size == len(set("".join(corpus.splits()["train"]) + "\n")) + 1
    assert dm.stride == 8 and dm.train_tokens > 0 and dm.val_tokens > 0
    assert dm.windows_per_epoch == (dm.train_tokens - 17) // 8 + 1
    x, y = _xy(next(iter(dm.train_dataloader())))
    assert x.shape == y.shape == (4, 16) and x.dtype == y.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert int(x.max()) < tok.vocab_size
    assert "quick brown fox" in tok.decode(x[0].tolist()) or "lazy dog" in tok.decode(x[0].tolist())
    vx, vy = _xy(next(iter(dm.val_dataloader())))
    assert vx.shape == (4, 16) and torch.equal(vx[:, 1:], vy[:, :-1])
    assert len(dm.val_dataloader().dataset) == dm.val_windows <= 512


def test_default_shakespeare_gpt2(tmp_path) -> None:
    dm = ShardDataModule(ShakespearePlays(), tokenizer={"name": "gpt2"}, batch_size=2, context_length=32,
                         cache_dir=str(tmp_path))
    dm.prepare_data()
    dm.setup("fit")
    assert dm.tokenizer.vocab_size == 50257
    assert 1_000_000 < dm.train_tokens < 1_600_000 and 0.07 < dm.val_tokens / (dm.train_tokens + dm.val_tokens)
    x, y = _xy(next(iter(dm.train_dataloader())))
    assert x.shape == (2, 32) and torch.equal(x[:, 1:], y[:, :-1])


def test_tokenizer_before_setup_is_a_clear_error(corpus, tmp_path) -> None:
    with pytest.raises(RuntimeError, match="setup"):
        _ = _dm(corpus, tmp_path).tokenizer


def test_context_too_long(corpus, tmp_path) -> None:
    dm = _dm(corpus, tmp_path, context_length=100_000)
    dm.prepare_data()
    with pytest.raises(DataError, match="lower model.context_length"):
        dm.setup("fit")


def test_corrupt_shard_fails_setup(corpus, tmp_path) -> None:
    dm = _dm(corpus, tmp_path)
    dm.prepare_data()
    shard = next((tmp_path / "cache").glob("*/train_000000.bin"))
    raw = bytearray(shard.read_bytes())
    raw[-5] ^= 0x10
    shard.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="checksum mismatch.*delete"):
        _dm(corpus, tmp_path).setup("fit")


def test_state_dict_and_pickle(corpus, tmp_path) -> None:
    dm = _dm(corpus, tmp_path)
    dm.prepare_data()
    dm.setup("fit")
    dm.train_dataloader()
    assert dm.state_dict() == {"batches_served": 0}
    dm.load_state_dict({"batches_served": 7})
    assert dm.batches_served == 7 and dm.train_dataloader().dataset.batches_served == 7
    clone = pickle.loads(pickle.dumps(dm))
    assert clone.tokenizer == dm.tokenizer
    assert torch.equal(next(iter(clone.train_dataloader()))["input_ids"], next(iter(dm.train_dataloader()))["input_ids"])


class _Recorder(L.LightningModule):
    """Smallest trainable module; records the first tokens of every training batch it sees."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(vocab_size, 4)
        self.head = torch.nn.Linear(4, vocab_size)
        self.seen: list[list[int]] = []

    def training_step(self, batch, batch_idx):
        x, y = _xy(batch)
        self.seen.append(x[:, 0].tolist())
        logits = self.head(self.emb(x))
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())

    def validation_step(self, batch, batch_idx):
        x, y = _xy(batch)
        self.log("val_loss", torch.nn.functional.cross_entropy(self.head(self.emb(x)).flatten(0, 1), y.flatten()))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(dm: ShardDataModule, max_steps: int, ckpt_in=None, ckpt_out=None) -> _Recorder:
    trainer = L.Trainer(max_steps=max_steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=1,
                        val_check_interval=3, limit_val_batches=2)
    dm.prepare_data()
    dm.setup("fit")
    model = _Recorder(dm.tokenizer.vocab_size)
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_in)
    if ckpt_out:
        trainer.save_checkpoint(ckpt_out)
    return model


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_continues_with_the_next_batch(corpus, tmp_path, num_workers: int) -> None:
    continuous = _fit(_dm(corpus, tmp_path, num_workers=num_workers), max_steps=8).seen
    first_dm = _dm(corpus, tmp_path, num_workers=num_workers)
    first = _fit(first_dm, max_steps=5, ckpt_out=tmp_path / "a.ckpt").seen
    # counted at consumption (5 steps = 5 batches), not at prefetch; validation batches are not counted
    assert first_dm.batches_served == 5
    assert torch.load(tmp_path / "a.ckpt", weights_only=True)["ShardDataModule"] == {"batches_served": 5}
    second = _fit(_dm(corpus, tmp_path, num_workers=num_workers), max_steps=8, ckpt_in=tmp_path / "a.ckpt").seen
    assert first == continuous[:5]
    assert second == continuous[5:8]
