"""objective=sft end to end: init_from, the loss falling, the recipe as the README types it, chat generation."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from scratchllm.errors import CheckpointError
from scratchllm.finetune import ChatDataModule, IM_END
from scratchllm.finetune.start import grow_to, load_start
from scratchllm.training.objectives_sft import SupervisedFineTuning


def small_data(**overrides) -> ChatDataModule:
    settings = dict(builtin=dict(per_play=4, val_per_play=2), batch_size=8, context_length=256, seed=0)
    return ChatDataModule(**{**settings, **overrides})


def test_init_from_brings_its_tokenizer_and_grows_the_vocabulary(start_ckpt: Path) -> None:
    model, tokenizer = load_start(str(start_ckpt))
    ids = torch.tensor([[1, 2, 3, 4]])
    before = model(ids)[0][..., : tokenizer.vocab_size].detach()
    data = small_data()
    data.use_tokenizer(tokenizer)
    data.setup("fit")
    assert IM_END in data.tokenizer.special_tokens
    grow_to(model, data.tokenizer)
    assert model.config.vocab_size == tokenizer.vocab_size  # the same tokenizer object, markers added
    torch.testing.assert_close(model(ids)[0][..., : before.shape[-1]], before)  # old ids' logits unchanged


def test_missing_init_from_is_named() -> None:
    with pytest.raises(CheckpointError, match="init_from=nowhere.ckpt: checkpoint nowhere.ckpt does not exist"):
        load_start("nowhere.ckpt")


def test_a_tiny_sft_run_lowers_the_answer_loss(start_ckpt: Path) -> None:
    model, tokenizer = load_start(str(start_ckpt))
    data = small_data()
    data.use_tokenizer(tokenizer)
    data.setup("fit")
    grow_to(model, data.tokenizer)
    objective = SupervisedFineTuning()
    batch = next(iter(data.train_dataloader()))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):  # one batch, many steps: the masked loss must fall
        out = objective(model, batch)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    assert out.weight == (batch["labels"] != -100).sum()
    assert losses[-1] < 0.5 * losses[0], losses


REPO = Path(__file__).resolve().parents[2]


def run(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    env.pop("PYTEST_CURRENT_TEST", None)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, input=stdin, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_recipe_then_chat(start_ckpt: Path, tmp_path: Path) -> None:
    """The README's commands: fine-tune with the recipe from a checkpoint, then chat with the result."""
    train = run("-m", "scratchllm.train", "experiment=sft_plays", f"init_from={start_ckpt}",
                "trainer.max_steps=4", "trainer.val_check_interval=2", "data.batch_size=4",
                "data.builtin.per_play=2", "data.builtin.val_per_play=2", "logger=csv", cwd=tmp_path)
    assert train.returncode == 0, train.stderr[-3000:]
    result = json.loads(next(line for line in train.stdout.splitlines() if line.startswith("result: "))[8:])
    assert result["global_step"] == 4 and result["model"] == "tiny-char"
    chat = run("-m", "scratchllm.generate", "ckpt_path=last", "chat=true", "interactive=true",
               "max_new_tokens=8", "temperature=0", cwd=tmp_path, stdin="Who speaks next?\nAnd then?\n")
    assert chat.returncode == 0, chat.stderr[-3000:]
    assert "<|im_end|>" not in chat.stdout  # the end-of-turn token stops the reply and is not printed
    prompts = [int(m) for m in re.findall(r"(\d+) prompt tokens", chat.stderr)]
    assert len(prompts) == 2 and prompts[1] > prompts[0] + len("And then?")  # the second turn sees the first


@pytest.mark.slow
def test_init_from_that_does_not_exist_is_one_line(tmp_path: Path) -> None:
    out = run("-m", "scratchllm.train", "experiment=sft_plays", "init_from=missing.ckpt", cwd=tmp_path)
    assert out.returncode == 2
    assert "init_from=missing.ckpt" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
def test_a_starting_model_too_short_for_the_recipe_names_the_fix(tmp_path: Path) -> None:
    """The default nano model has context 64; sft_plays' examples need 256. Raising data.context_length cannot
    help (it is cut to the model's), so the one line says to start from a longer model."""
    from tests.finetune.conftest import save_start

    start = save_start(tmp_path / "short.ckpt", context_length=64)
    out = run("-m", "scratchllm.train", "experiment=sft_plays", f"init_from={start}", "trainer.max_steps=2",
              cwd=tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert "no train example fits in context_length=64" in last and "Traceback" not in out.stderr
    assert "start from a model trained with model.context_length=256" in last


def test_init_from_a_hugging_face_gpt2_folder(tmp_path: Path) -> None:
    from scratchllm.interop.hf import save_hf
    from scratchllm.model import GPT, ModelConfig

    folder = save_hf(GPT(ModelConfig(vocab_size=50257, context_length=256, n_layer=1, n_head=2, n_embd=16)),
                     tmp_path / "hf")
    model, tokenizer = load_start(str(folder))
    assert tokenizer.name == "gpt2"
    data = small_data(batch_size=2)
    data.use_tokenizer(tokenizer)
    data.setup("fit")
    grow_to(model, data.tokenizer)
    assert model.config.vocab_size == 50259
    out = SupervisedFineTuning()(model, next(iter(data.train_dataloader())))
    assert torch.isfinite(out.loss)


@pytest.mark.slow
def test_lora_recipe_trains_only_the_adapter_and_saves_it_alone(start_ckpt: Path, tmp_path: Path) -> None:
    from scratchllm import checkpoint
    from scratchllm.finetune.lora import apply_lora, load_adapter
    from scratchllm.model import GPT

    train = run("-m", "scratchllm.train", "experiment=sft_plays", "adapter=lora", f"init_from={start_ckpt}",
                "trainer.max_steps=3", "trainer.val_check_interval=3", "data.batch_size=4", "optim.lr=1e-2",
                "data.builtin.per_play=2", "data.builtin.val_per_play=2", "logger=csv", cwd=tmp_path)
    assert train.returncode == 0, train.stderr[-3000:]
    result = json.loads(next(line for line in train.stdout.splitlines() if line.startswith("result: "))[8:])
    assert 0 < result["trainable_params"] < result["params"] / 2
    trained = checkpoint.load(result["last_checkpoint"])
    assert checkpoint.describe(trained).adapters["rank"] == 8
    state = checkpoint.model_state(trained)
    start, tokenizer = load_start(str(start_ckpt))
    data = small_data()
    data.use_tokenizer(tokenizer)
    data.setup("fit")
    grow_to(start, data.tokenizer)
    for name, value in start.state_dict().items():  # the base is frozen: unchanged by training
        torch.testing.assert_close(state[name], value, rtol=0, atol=0)
    load_adapter(start, result["adapter"])
    ids = torch.tensor([[5, 6, 7, 8]])
    run_model = GPT(start.config)  # the run's checkpoint, rebuilt from its metadata
    apply_lora(run_model, checkpoint.describe(trained).adapters)
    run_model.load_state_dict(state)
    assert any((state[k] != 0).any() for k in state if "lora_B" in k)  # the adapter did train
    torch.testing.assert_close(start.eval()(ids)[0], run_model.eval()(ids)[0], rtol=0, atol=0)
    # generation reads the LoRA checkpoint (adapter folded in) and gives the unmerged model's logits
    from scratchllm.generation.loading import load_for_generation

    for_generation, _ = load_for_generation(result["last_checkpoint"])
    torch.testing.assert_close(for_generation(ids)[0], run_model(ids)[0], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_init_from_run_uses_this_runs_attention(start_ckpt: Path, tmp_path: Path) -> None:
    """The attention path is the fine-tuning run's choice (what auto picks, or named), not the starting model's:
    it holds no weights, and a compiled CPU run wants the explicit one."""
    import torch

    train = run("-m", "scratchllm.train", "experiment=sft_plays", f"init_from={start_ckpt}", "model.attention=explicit",
                "trainer.max_steps=2", "trainer.val_check_interval=2", "data.batch_size=4",
                "data.builtin.per_play=2", "data.builtin.val_per_play=2", "sample.max_new_tokens=0", cwd=tmp_path)
    assert train.returncode == 0, train.stderr[-3000:]
    ckpt = torch.load(next(tmp_path.glob("logs/train/runs/*/checkpoints/last.ckpt")), weights_only=True)
    assert ckpt["hyper_parameters"]["model"]["attention"] == "explicit"
