"""load_for_generation: Lightning checkpoints and Hugging Face folders in, (GPT, tokenizer) out; clear errors."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch

from scratchllm.errors import CheckpointError, ConfigError, DataError
from scratchllm.generation.loading import load_for_generation, resolve_checkpoint
from scratchllm.model import GPT
from scratchllm.tokenizers import CharTokenizer, GPT2Tokenizer, build_tokenizer

from tests.generation.conftest import CHARS


def test_lightning_checkpoint_gives_the_trained_weights_and_tokenizer(trained_ckpt: Path) -> None:
    model, tokenizer = load_for_generation(trained_ckpt, device="cpu", dtype="float32")
    assert isinstance(model, GPT) and not model.training
    assert model.config.name == "tiny-char" and model.config.vocab_size == len(CHARS) + 1
    assert isinstance(tokenizer, CharTokenizer) and tokenizer.decode(tokenizer.encode("ROMEO: é")) == "ROMEO: é"
    ckpt = torch.load(trained_ckpt, weights_only=True)
    expected = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    state = model.state_dict()
    assert set(state) == set(expected)
    for name, value in expected.items():
        assert torch.equal(state[name], value), name


def test_bfloat16_casts_every_weight_and_still_decodes(trained_ckpt: Path) -> None:
    model32, _ = load_for_generation(trained_ckpt, device="cpu", dtype="float32")
    model16, _ = load_for_generation(trained_ckpt, device="cpu", dtype=torch.bfloat16)
    assert {p.dtype for p in model16.parameters()} == {torch.bfloat16}
    for (name, a), b in zip(model32.named_parameters(), model16.parameters()):
        assert torch.equal(a.to(torch.bfloat16), b), name  # a plain cast of the same weights
    idx = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        full = model32(idx)[0].float()
        half = model16(idx)[0].float()
    assert (full - half).abs().max() < 0.1 * full.abs().max()


def test_last_resolves_to_the_newest_last_ckpt(tmp_path: Path) -> None:
    old = tmp_path / "logs" / "train" / "runs" / "a" / "checkpoints" / "last.ckpt"
    new = tmp_path / "logs" / "train" / "runs" / "b" / "checkpoints" / "last.ckpt"
    for i, path in enumerate((old, new)):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
        os.utime(path, (time.time() - 100 + 50 * i,) * 2)
    assert resolve_checkpoint("last", tmp_path / "logs") == new
    with pytest.raises(CheckpointError, match=r"ckpt_path=last but no checkpoints/last.ckpt exists under"):
        resolve_checkpoint("last", tmp_path / "empty")


def test_missing_path_names_the_path_and_ckpt_path_last(tmp_path: Path) -> None:
    missing = tmp_path / "nope.ckpt"
    with pytest.raises(CheckpointError) as info:
        load_for_generation(missing, device="cpu", dtype="float32")
    assert str(missing) in str(info.value) and "ckpt_path=last" in str(info.value)
    with pytest.raises(CheckpointError, match="ckpt_path="):
        load_for_generation(None, device="cpu", dtype="float32")  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["text", "pickled_object", "no_state_dict", "no_model_config", "wrong_weights"])
def test_files_that_are_not_scratchllm_checkpoints(tmp_path: Path, trained_ckpt: Path, kind: str) -> None:
    path = tmp_path / "bad.ckpt"
    if kind == "text":
        path.write_text("hello, I am not a checkpoint\n")
    elif kind == "pickled_object":
        torch.save({"state_dict": {}, "thing": Path("x")}, path)  # weights_only refuses Path objects
    elif kind == "no_state_dict":
        torch.save({"weights": torch.zeros(3)}, path)
    elif kind == "no_model_config":
        torch.save({"state_dict": {"model.x": torch.zeros(1)}, "hyper_parameters": {}}, path)
    else:
        ckpt = torch.load(trained_ckpt, weights_only=True)
        ckpt["state_dict"].pop("model.lm_head.weight")
        torch.save(ckpt, path)
    with pytest.raises(CheckpointError) as info:
        load_for_generation(path, device="cpu", dtype="float32")
    assert str(path) in str(info.value)
    assert len(str(info.value).splitlines()) == 1


def test_a_folder_without_config_json_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="without config.json"):
        load_for_generation(tmp_path, device="cpu", dtype="float32")


def test_hf_folder_with_gpt2_vocab_gets_the_gpt2_tokenizer(gpt2_vocab_hf: Path) -> None:
    model, tokenizer = load_for_generation(gpt2_vocab_hf, device="cpu", dtype="float32")
    assert model.config.vocab_size == 50257 and isinstance(tokenizer, GPT2Tokenizer)


def test_hf_folder_with_another_vocab_has_no_tokenizer_unless_given(tmp_path: Path, tiny_model) -> None:
    from scratchllm.interop.hf import save_hf

    folder = save_hf(tiny_model(tie_embeddings=True), tmp_path / "hf")
    model, tokenizer = load_for_generation(folder, device="cpu", dtype="float32")
    assert model.config.vocab_size == 65 and tokenizer is None
    chars = CharTokenizer(list("abcdefgh"))
    chars.save(tmp_path / "tokenizer.json")
    for spec in (tmp_path / "tokenizer.json", tmp_path):  # the file, or a data cache folder holding it
        _, tokenizer = load_for_generation(folder, device="cpu", dtype="float32", tokenizer=spec)
        assert tokenizer == chars


def test_a_tokenizer_larger_than_the_model_vocab_is_refused(trained_ckpt: Path) -> None:
    with pytest.raises(ConfigError, match="50257 ids"):
        load_for_generation(trained_ckpt, device="cpu", dtype="float32", tokenizer="gpt2")
    with pytest.raises(ConfigError, match="tokenizer.json"):
        load_for_generation(trained_ckpt, device="cpu", dtype="float32", tokenizer="char")
    assert build_tokenizer("gpt2").vocab_size == 50257


@pytest.mark.parametrize("option, value, message", [("dtype", "float16", "dtype='float16'"),
                                                    ("device", "tpu", "device='tpu'")])
def test_bad_device_or_dtype(trained_ckpt: Path, option: str, value: str, message: str) -> None:
    kwargs = {"device": "cpu", "dtype": "float32", option: value}
    with pytest.raises(ConfigError, match=message):
        load_for_generation(trained_ckpt, **kwargs)


def test_the_config_tokenizer_node_reads_the_vocabulary_from_tokenizer_path(
    char_hf_export: tuple[Path, Path], trained_ckpt: Path
) -> None:
    """The generate config's ``tokenizer`` node: unset keys are null; ``tokenizer=<group option>`` adds a name."""
    folder, cache = char_hf_export
    _, expected = load_for_generation(trained_ckpt, device="cpu", dtype="float32")
    for node in (
        {"name": "char", "path": str(cache)},  # tokenizer=char tokenizer.path=<cache folder>
        {"path": str(cache / "tokenizer.json")},  # tokenizer.path=<file> alone: the file names its tokenizer
        {"path": str(trained_ckpt)},  # the training checkpoint the export came from
    ):
        _, tokenizer = load_for_generation(folder, device="cpu", dtype="float32", tokenizer=node)
        assert tokenizer == expected, node
    _, tokenizer = load_for_generation(trained_ckpt, device="cpu", dtype="float32", tokenizer={"path": None})
    assert tokenizer == expected  # nothing set: the checkpoint's own


@pytest.mark.parametrize(
    "node, error, message",
    [
        ({"name": "char", "path": None}, ConfigError, "tokenizer=char needs the model's character vocabulary"),
        ({"name": "gpt2", "path": "CACHE"}, ConfigError, "tokenizer=gpt2 but tokenizer.path=.* holds a char"),
        ({"name": "bpe", "path": None}, ConfigError, "tokenizer=bpe needs tokenizer.path"),
        ({"path": "nowhere/tokenizer.json"}, DataError, "tokenizer.path=nowhere/tokenizer.json does not exist"),
    ],
)
def test_a_wrong_tokenizer_node_is_refused_before_the_weights_load(
    char_hf_export: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, node: dict, error: type, message: str
) -> None:
    folder, cache = char_hf_export
    node = {k: str(cache) if v == "CACHE" else v for k, v in node.items()}
    monkeypatch.setattr("scratchllm.interop.hf.load_hf", lambda *_: pytest.fail("loaded the weights first"))
    with pytest.raises(error, match=message):
        load_for_generation(folder, device="cpu", dtype="float32", tokenizer=node)
