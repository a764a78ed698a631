"""``python -m scratchllm.generate tokenizer=… tokenizer.path=…``: decoding models whose folder names no tokenizer,
and prompt characters a char vocabulary lacks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from scratchllm.generation import generate
from scratchllm.model import GPT, ModelConfig
from scratchllm.tokenizers import GPT2Tokenizer

from tests.generation.test_generation_cli import greedy_text, run_main, run_module


def one_error_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_a_char_hf_export_decodes_with_its_data_cache_tokenizer(
    char_hf_export: tuple[Path, Path], trained_ckpt: Path, tmp_path: Path
) -> None:
    folder, cache = char_hf_export
    proc = run_module(f"ckpt_path={folder}", "tokenizer=char", f"tokenizer.path={cache}", "prompt=ROMEO:",
                      "max_new_tokens=12", "temperature=0", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == "ROMEO:" + greedy_text(trained_ckpt, "ROMEO:", 12) + "\n"  # the exported weights' text
    assert "tokenizer char" in proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["tokenizer.json", "ckpt"])
def test_tokenizer_path_alone_names_the_tokenizer(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, char_hf_export: tuple[Path, Path],
    trained_ckpt: Path, tmp_path: Path, where: str,
) -> None:
    folder, cache = char_hf_export
    monkeypatch.chdir(tmp_path)
    path = cache / "tokenizer.json" if where == "tokenizer.json" else trained_ckpt
    code, out, err = run_main(monkeypatch, capsys, f"ckpt_path={folder}", f"tokenizer.path={path}",
                              "prompt=ROMEO:", "max_new_tokens=8", "temperature=0")
    assert code == 0, err
    assert out == "ROMEO:" + greedy_text(trained_ckpt, "ROMEO:", 8) + "\n"


def test_tokenizer_gpt2_decodes_a_gpt2_shaped_folder_with_a_padded_vocabulary(tmp_path: Path) -> None:
    """50,304 ids (GPT-2's vocabulary padded to a multiple of 64): not recognised as GPT-2's, so it needs tokenizer=gpt2."""
    from scratchllm.interop.hf import save_hf

    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=50304, context_length=32, n_layer=1, n_head=2, n_embd=16, init_std=0.5))
    folder = save_hf(model, tmp_path / "hf-padded")
    proc = run_module(f"ckpt_path={folder}", "tokenizer=gpt2", "prompt=Hello", "max_new_tokens=8", "temperature=0",
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    gpt2 = GPT2Tokenizer()
    expected = gpt2.decode(generate(model.eval(), gpt2.encode("Hello"), 8, temperature=0, eot_id=gpt2.eot_id))
    assert proc.stdout == "Hello" + expected + "\n" and "tokenizer gpt2" in proc.stderr
    without = run_module(f"ckpt_path={folder}", "prompt=Hello", cwd=tmp_path)
    assert without.returncode == 2
    assert without.stderr.strip().splitlines()[-1].startswith("error: no tokenizer is known for this model")


@pytest.mark.parametrize(
    "args, words",
    [
        (("tokenizer=nope",), ["tokenizer", "nope"]),  # not a group option: the entry point's precheck
        (("tokenizer=char",), ["tokenizer=char needs the model's character vocabulary", "tokenizer.path="]),
        (("tokenizer=gpt2", "tokenizer.path=CACHE"), ["holds a char tokenizer", "drop tokenizer=gpt2"]),
        (("tokenizer.path=missing/folder",), ["tokenizer.path=missing/folder does not exist"]),
        (("tokenizer.unknown=maybe",), ["tokenizer.unknown='maybe'", "error, replace"]),
    ],
)
def test_a_bad_tokenizer_is_one_line_and_exit_2(
    char_hf_export: tuple[Path, Path], tmp_path: Path, args: tuple[str, ...], words: list[str]
) -> None:
    folder, cache = char_hf_export
    args = tuple(a.replace("CACHE", str(cache)) for a in args)
    proc = run_module(f"ckpt_path={folder}", "prompt=ROMEO:", *args, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    line = one_error_line(proc)
    assert all(w in line for w in words), line


def test_prompt_characters_outside_the_vocabulary_are_named(trained_ckpt: Path, tmp_path: Path) -> None:
    prompt = "ROMEO: ïl€ï"  # ï twice: named once
    proc = run_module(f"ckpt_path={trained_ckpt}", f'prompt="{prompt}"', "max_new_tokens=6", "temperature=0",
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == prompt + greedy_text(trained_ckpt, prompt, 6) + "\n"  # the model saw <unk> for each
    notes = [line for line in proc.stderr.splitlines() if line.startswith("note:")]
    assert notes == ["note: 2 prompt characters are not in the model's vocabulary and were replaced by <unk>: "
                     "'ï', '€'"]
    strict = run_module(f"ckpt_path={trained_ckpt}", f'prompt="{prompt}"', "tokenizer.unknown=error", cwd=tmp_path)
    assert strict.returncode == 2 and strict.stdout == ""
    last = strict.stderr.strip().splitlines()[-1]  # after the "loaded ..." note
    assert last.startswith("error: 2 prompt characters are not in the model's vocabulary: 'ï', '€'; remove them")
