"""End-to-end training runs in-process: fast_dev_run, a falling loss, exact resume, and one-line user errors."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from scratchllm.cli import report_user_errors
from scratchllm.model import GPT, ModelConfig
from scratchllm.training.run import train


def _run(cfg):
    with report_user_errors():
        return train(cfg)


def test_fast_dev_run_on_cpu(make_cfg):
    result = _run(make_cfg("debug=fdr"))
    assert result["global_step"] == 1
    assert result["sample"]  # the end-of-run sample decodes


def test_default_corpus_loss_falls_and_run_files_exist(make_cfg, tmp_path):
    cfg = make_cfg("trainer.max_steps=40", "trainer.val_check_interval=20", "optim.lr=3e-3", "logger=many")
    result = _run(cfg)
    out = Path(cfg.paths.output_dir)
    assert result["val_loss"] < math.log(result_vocab(out)) - 0.6, result
    saved = json.loads((out / "result.json").read_text())
    assert saved["global_step"] == 40
    # The time-to-quality curve: one point per validation, training time growing, validation time not counted.
    curve = saved["curve"]
    assert [p["step"] for p in curve] == [20, 40]
    per_step = cfg.data.batch_size * cfg.model.context_length
    assert [p["tokens_seen"] for p in curve] == [20 * per_step, 40 * per_step]
    assert 0 < curve[0]["train_seconds"] < curve[1]["train_seconds"] <= saved["train_seconds"] < saved["fit_seconds"]
    assert curve[-1]["val_loss"] == pytest.approx(result["val_loss"], abs=1e-3)
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    rows = list(csv.DictReader(open(out / "csv" / "metrics.csv")))
    logged = {k for row in rows for k, v in row.items() if v}
    for key in ("train/loss", "val/loss", "val/ppl", "train/lr", "train/grad_norm", "train/tokens_per_s",
                "train/tokens_seen", "time/train_seconds", "hp/val_loss"):
        assert key in logged, key
    # Checkpoints load with weights_only=True and carry what generation needs.
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["tokenizer_config"]["name"] == "char"
    assert not any("_orig_mod" in k for k in ckpt["state_dict"])


def result_vocab(out: Path) -> int:
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    return ckpt["hyper_parameters"]["model"]["vocab_size"]


def _losses(out: Path) -> dict[int, float]:
    rows = csv.DictReader(open(out / "csv" / "metrics.csv"))
    return {int(r["step"]): float(r["train/loss"]) for r in rows if r.get("train/loss")}


def test_exact_resume_matches_uninterrupted_run(make_cfg):
    common = [
        "trainer.max_steps=8",
        "trainer.val_check_interval=4",
        "model.dropout=0.1",  # dropout draws random numbers: they must repeat after a resume too
        "logger=csv",
        "callbacks.model_checkpoint.every_n_train_steps=4",
        "callbacks.model_checkpoint.save_top_k=-1",
        "callbacks.model_checkpoint.monitor=null",
        "callbacks.model_checkpoint.filename='step{step}'",
        "sample.max_new_tokens=0",
    ]
    full_cfg = make_cfg(*common, output="full")
    _run(full_cfg)
    full = Path(full_cfg.paths.output_dir)
    mid = full / "checkpoints" / "step4.ckpt"
    assert mid.is_file(), sorted(p.name for p in (full / "checkpoints").iterdir())

    # resumed with the default length (auto): it keeps the checkpoint's 8 steps, so the schedule is the same
    resumed_cfg = make_cfg(*common, f"ckpt_path={mid}", "trainer.max_steps=auto", output="resumed")
    _run(resumed_cfg)
    resumed = Path(resumed_cfg.paths.output_dir)
    assert json.loads((resumed / "result.json").read_text())["fast_path"]["trainer.max_steps"] == 8

    a = torch.load(full / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 8
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    # Tokens seen continue across the resume (the step-4 checkpoint is written before that step's validation).
    full_result = json.loads((full / "result.json").read_text())
    resumed_result = json.loads((resumed / "result.json").read_text())
    assert full_result["curve"][-1]["step"] == resumed_result["curve"][-1]["step"] == 8
    assert full_result["curve"][-1]["tokens_seen"] == resumed_result["curve"][-1]["tokens_seen"]
    full_losses, resumed_losses = _losses(full), _losses(resumed)
    later = [s for s in full_losses if s >= 4]
    assert later and all(full_losses[s] == resumed_losses[s] for s in later), (full_losses, resumed_losses)


# ------------------------------------------------------------------------------------------ user errors
def _one_line_error(cfg, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        _run(cfg)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert "Traceback" not in err
    return err


def test_unknown_variant_value(make_cfg, capsys):
    err = _one_line_error(make_cfg("model.norm=batchnorm"), capsys)
    assert "model.norm" in err and "layernorm" in err and "rmsnorm" in err


def test_missing_data_path(make_cfg, capsys, tmp_path):
    err = _one_line_error(make_cfg("data=text_files", f"data.path={tmp_path}/nope/*.txt"), capsys)
    assert "nope" in err


def test_empty_corpus(make_cfg, capsys, tmp_path):
    (tmp_path / "empty.txt").write_text("")
    err = _one_line_error(make_cfg("data=text_files", f"data.path={tmp_path}/empty.txt"), capsys)
    assert "empty" in err.lower()


def test_corrupt_shard(make_cfg, capsys, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(3):
        (corpus / f"doc{i}.txt").write_text(("To be, or not to be, that is the question. " * 40) + str(i))
    cache = tmp_path / "own_cache"
    overrides = ("data=text_files", f"data.path={corpus}", f"paths.cache_dir={cache}", "debug=fdr")
    _run(make_cfg(*overrides))
    shard = next(p for p in cache.rglob("*") if p.is_file() and "train" in p.name and p.suffix not in (".json", ""))
    raw = bytearray(shard.read_bytes())
    raw[-3] ^= 0xFF
    shard.write_bytes(bytes(raw))
    err = _one_line_error(make_cfg(*overrides), capsys)
    assert "corrupt" in err


def test_checkpoint_of_another_shape(make_cfg, capsys):
    cfg = make_cfg("trainer.max_steps=2", "sample.max_new_tokens=0", output="small")
    _run(cfg)
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    err = _one_line_error(make_cfg("model.n_embd=64", f"ckpt_path={ckpt}", output="other"), capsys)
    assert "another shape" in err and "n_embd" in err


def test_missing_checkpoint(make_cfg, capsys, tmp_path):
    err = _one_line_error(make_cfg(f"ckpt_path={tmp_path}/nope.ckpt"), capsys)
    assert "does not exist" in err


def test_train_on_a_prepared_shard_folder(make_cfg, tmp_path):
    """data=shards reads a folder prepare_corpus wrote, with the folder's own tokenizer."""
    from scratchllm.data import TextFiles, prepare_corpus

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("Now is the winter of our discontent made glorious summer by this sun of York. " * 60)
    prepared = prepare_corpus(TextFiles(str(corpus)), {"name": "char"}, tmp_path / "prep")
    result = _run(make_cfg("data=shards", f"data.path={prepared.directory}", "trainer.max_steps=2",
                           "sample.max_new_tokens=0"))
    assert result["global_step"] == 2 and result["tokenizer"] == "char"


def test_missing_shard_folder(make_cfg, capsys, tmp_path):
    err = _one_line_error(make_cfg("data=shards", f"data.path={tmp_path}/none"), capsys)
    assert "does not exist" in err and "data.path" in err


@pytest.mark.parametrize("algorithm", ["norm", "value"])
def test_bf16_mixed_with_fused_adamw_and_clipping_trains(make_cfg, algorithm):
    """Lightning's mixed-precision plugin refuses to clip with a fused optimizer; bf16 needs no unscaling, so the
    module clips itself, by norm or by value (fused AdamW is the default on CPU; experiment=gpt2_124m on a GPU)."""
    result = _run(make_cfg("precision=bf16-mixed", "trainer.gradient_clip_val=1.0",
                           f"+trainer.gradient_clip_algorithm={algorithm}", "trainer.max_steps=3",
                           "sample.max_new_tokens=0"))
    assert result["global_step"] == 3


@pytest.mark.slow
def test_fast_cpu_recipe_trains_compiled_in_bf16(make_cfg, tmp_path):
    """The time-to-quality recipe's path: bf16 autocast + torch.compile in place + explicit attention + fused
    AdamW trains through the Trainer, and its checkpoint keys are the eager model's (no ``_orig_mod.``)."""
    text = tmp_path / "tiny.txt"
    text.write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n\n" * 400)
    # the path the auto defaults pick on a CPU with AMX-BF16, named here so it is tested on every machine
    cfg = make_cfg("experiment=tinyshakespeare_char_quick", f"data.path={text}", "+data.corpus.sha256=null",
                   "sample.max_new_tokens=0", "precision=bf16-mixed", "compile=true", "model.attention=explicit")
    assert (cfg.compile, cfg.trainer.precision, cfg.model.attention, cfg.optim.fused) == (
        True, "bf16-mixed", "explicit", True)
    result = _run(cfg)
    out = Path(cfg.paths.output_dir)
    assert result["global_step"] == 6 and math.isfinite(result["val_loss"])
    assert [p["step"] for p in result["curve"]] == [3, 6]
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert not any("_orig_mod" in k for k in ckpt["state_dict"])
    eager = GPT(ModelConfig.from_dict(ckpt["hyper_parameters"]["model"]))
    assert set(ckpt["state_dict"]) == {"model." + k for k in eager.state_dict()}


def test_last_checkpoint_is_the_final_step_when_it_is_not_a_validation_step(make_cfg, capsys):
    """7 steps, validation every 3: Lightning alone left last.ckpt at step 6, so generate read stale weights and a
    resume of the finished run trained step 7 again. Now last.ckpt is step 7 and the resume has nothing to do."""
    common = ["trainer.max_steps=7", "trainer.val_check_interval=3", "sample.max_new_tokens=0", "logger=csv"]
    cfg = make_cfg(*common)
    result = _run(cfg)
    out = Path(cfg.paths.output_dir)
    last = out / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 7
    best = min(result["curve"], key=lambda point: point["val_loss"])["step"]  # a validation step: 3 or 6
    assert result["last_checkpoint"] == str(last) and f"step{best:06d}-" in result["best_checkpoint"]
    resumed = _run(make_cfg(*common, f"ckpt_path={last}", output="resumed"))
    assert resumed["global_step"] == 7
    assert "nothing to train" in capsys.readouterr().err


def test_a_run_too_short_to_validate_reports_its_checkpoint(make_cfg):
    cfg = make_cfg("trainer.max_steps=2", "trainer.val_check_interval=3", "sample.max_new_tokens=0", "logger=csv")
    result = _run(cfg)
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    assert result["last_checkpoint"] == str(last) and "best_checkpoint" not in result
    assert torch.load(last, weights_only=True)["global_step"] == 2
