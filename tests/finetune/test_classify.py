"""objective=classify: the last real token's state, the trainable modes, the data and its errors, a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from scratchllm.errors import ConfigError, DataError
from scratchllm.finetune import ClassifyDataModule
from scratchllm.finetune.classify_data import collate_labelled, genre_passages, read_labelled
from scratchllm.finetune.lora import LoRAConfig, apply_lora
from scratchllm.model import GPT, ModelConfig
from scratchllm.training.objectives_classify import Classify, last_hidden


def tiny() -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig(vocab_size=30, context_length=32, n_layer=2, n_head=2, n_embd=16))


def test_the_head_reads_the_last_non_padding_token() -> None:
    model = tiny().eval()
    batch = collate_labelled([([3, 4, 5], 0), ([6, 7, 8, 9, 10, 11], 1)], pad_id=0)
    hidden = last_hidden(model, batch["input_ids"], batch["attention_mask"])
    captured = []
    hook = model.norm_f.register_forward_hook(lambda m, a, out: captured.append(out))
    model(torch.tensor([[3, 4, 5]]))
    hook.remove()
    torch.testing.assert_close(hidden[0], captured[0][0, -1], rtol=0, atol=1e-6)  # padding changes nothing


@pytest.mark.parametrize("mode, trained", [
    ("head", {"classifier"}),
    ("last_blocks", {"classifier", "blocks.1", "norm_f"}),
    ("all", {"classifier", "blocks.0", "blocks.1", "norm_f", "tok_emb", "pos_emb"}),
    ("adapter", {"classifier", "lora"}),
])
def test_trainable_modes(mode: str, trained: set[str]) -> None:
    model = tiny()
    if mode == "adapter":
        apply_lora(model, LoRAConfig(rank=2, targets=["qkv"]))
    Classify(labels=["a", "b"], trainable=mode).attach(model)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    kinds = {"lora" if ".lora_" in n else ".".join(n.split(".")[:2]) if n.startswith("blocks") else n.split(".")[0]
             for n in names}
    assert kinds == trained


def test_adapter_mode_needs_an_adapter_and_labels_are_needed() -> None:
    with pytest.raises(ConfigError, match=r"add adapter=lora"):
        Classify(labels=["a", "b"], trainable="adapter").attach(tiny())
    with pytest.raises(ConfigError, match="needs its labels"):
        Classify(labels=None).attach(tiny())


def test_csv_and_jsonl_and_the_unknown_label_error(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("text,label\nfair is foul,tragedy\nall's well,comedy\n")
    (tmp_path / "val.jsonl").write_text(json.dumps({"text": "a horse", "label": "history"}) + "\n")
    assert [e[:2] for e in read_labelled(tmp_path / "train.csv", "x")] == [("fair is foul", "tragedy"),
                                                                            ("all's well", "comedy")]
    data = ClassifyDataModule(tokenizer="char", dataset=None, train_paths=str(tmp_path / "train.csv"),
                              val_paths=str(tmp_path / "val.jsonl"), context_length=32)
    unknown = r"val.jsonl:1: unknown label 'history'; the labels are \['comedy', 'tragedy'\]"
    with pytest.raises(DataError, match=unknown):
        data.setup("fit")
    (tmp_path / "bad.csv").write_text("words,label\nx,y\n")
    with pytest.raises(DataError, match=r"bad.csv:1: the CSV header lacks column\(s\) \['text'\]"):
        read_labelled(tmp_path / "bad.csv", "x")


def test_builtin_genres_are_deterministic_and_held_out_by_play() -> None:
    a, b = genre_passages(per_play=3, val_per_play=3), genre_passages(per_play=3, val_per_play=3)
    assert a == b and len(a["val"]) == 12
    assert {w.split("#")[0] for _, _, w in a["val"]} == {"the-merry-wives-of-windsor", "henry-iv-part-2",
                                                         "all-s-well-that-ends-well", "julius-caesar"}
    assert not {w.split("#")[0] for _, _, w in a["train"]} & {w.split("#")[0] for _, _, w in a["val"]}


def test_a_tiny_head_only_run_fits_a_batch(start_ckpt: Path) -> None:
    from scratchllm.finetune.start import load_start

    model, tokenizer = load_start(str(start_ckpt))
    data = ClassifyDataModule(builtin=dict(per_play=2, val_per_play=2), batch_size=16, context_length=256)
    data.use_tokenizer(tokenizer)
    data.setup("fit")
    objective = Classify(labels=data.labels, trainable="all")
    objective.attach(model)
    batch = next(iter(data.train_dataloader()))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    first = objective(model, batch).loss.item()
    for _ in range(25):
        out = objective(model, batch)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    assert out.loss.item() < 0.5 * first and out.metrics["accuracy"].item() > 0.8


@pytest.mark.slow
def test_classify_recipe_with_lora(start_ckpt: Path, tmp_path: Path) -> None:
    from tests.finetune.test_sft import run

    train = run("-m", "scratchllm.train", "experiment=classify_plays", f"init_from={start_ckpt}", "adapter=lora",
                "objective.trainable=adapter", "trainer.max_steps=3", "trainer.val_check_interval=3",
                "data.batch_size=4", "data.max_val_windows=4", "data.builtin.per_play=2", "logger=csv", cwd=tmp_path)
    assert train.returncode == 0, train.stderr[-3000:]
    result = json.loads(next(line for line in train.stdout.splitlines() if line.startswith("result: "))[8:])
    assert 0 < result["trainable_params"] < result["params"] / 2 and "val_loss" in result
