"""``python -m scratchllm.tokenizer train|show``: in-process for speed, plus one real subprocess run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from scratchllm.tokenizer import main
from scratchllm.tokenizers import BPETokenizer, build_tokenizer, load_tokenizer


@pytest.fixture
def text_dir(tmp_path, plays_text):
    d = tmp_path / "texts"
    d.mkdir()
    (d / "dream.txt").write_text(plays_text[0], encoding="utf-8")
    (d / "more.jsonl").write_text("\n".join(json.dumps({"text": t[:20000]}) for t in plays_text[1:]),
                                  encoding="utf-8")
    return d


def test_train_then_show(text_dir, tmp_path, capsys) -> None:
    out = tmp_path / "tok"
    rc = main(["train", f"input={text_dir}", f"output={out}", "vocab_size=400",
               "special_tokens=[<|endoftext|>,<|user|>]", "name=dream"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "vocab 400 = 256 bytes + 142 merges + 2 special (<|endoftext|>=398, <|user|>=399)" in printed
    assert f"tokenizer=bpe tokenizer.path={out}" in printed
    tok = load_tokenizer(out)
    assert isinstance(tok, BPETokenizer) and tok.label == "dream" and tok.vocab_size == 400
    meta = json.loads((out / "bpe.json").read_text())
    assert meta["training"]["files"] == 2 and meta["training"]["documents"] == 3
    assert meta["training"]["requested_vocab_size"] == 400

    assert main(["show", "Lord, what fools these mortals be!", f"tokenizer={out}", "color=never"]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith("tokenizer: bpe 'dream' (vocab 400)")
    ids = tok.encode("Lord, what fools these mortals be!")
    assert shown.splitlines()[-1].startswith(f"{len(ids)} tokens, 34 characters")

    # retraining into the same folder is allowed (it holds a trained tokenizer)
    assert main(["train", f"input={text_dir / 'dream.txt'}", f"output={out}", "vocab_size=300"]) == 0
    assert build_tokenizer(str(out)).vocab_size == 300


def test_train_pattern_is_taken_verbatim(text_dir, tmp_path, capsys) -> None:
    pattern = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
    out = tmp_path / "p"
    assert main(["train", f"input={text_dir}/*.txt", f"output={out}", "vocab_size=300", f"pattern={pattern}"]) == 0
    assert load_tokenizer(out).pattern == pattern


@pytest.mark.parametrize("argv, message", [
    (["train", "output=x"], "train needs input="),
    (["train", "input=x.txt"], "train needs output="),
    (["train", "input=nope/*.txt", "output=OUT", "vocab_size=300"], "no input files match"),
    (["train", "input=x", "output=OUT", "vocab=5"], "train has no option 'vocab'"),
    (["train", "input=x", "output=OUT", "vocab_size=100"], "vocab_size=100 must be between"),
    (["train", "positional"], "is not key=value"),
    (["show"], "show needs a text"),
    (["show", "hi", "tokenizer=nope/dir"], "no tokenizer at nope/dir"),
    (["show", "hi", "tokenizer=sentencepiece"], "unknown tokenizer 'sentencepiece'"),
    (["show", "hi", "color=blue"], "color='blue'"),
])
def test_user_errors_are_one_line(argv, message, tmp_path, capsys) -> None:
    argv = [a.replace("OUT", str(tmp_path / "out")) for a in argv]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_refuses_a_foreign_output_folder(text_dir, tmp_path, capsys) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit):
        main(["train", f"input={text_dir}", f"output={tmp_path / 'busy'}", "vocab_size=300"])
    assert "non-empty folder" in capsys.readouterr().err


def test_help_and_unknown_command(capsys) -> None:
    assert main(["--help"]) == 0
    assert "python -m scratchllm.tokenizer train" in capsys.readouterr().out
    assert main(["bogus"]) == 2
    assert "unknown command 'bogus'" in capsys.readouterr().err
    assert main([]) == 2


def test_show_from_file_and_checkpoint(tmp_path, small_bpe, capsys) -> None:
    torch = pytest.importorskip("torch")
    (tmp_path / "t.txt").write_text("To be, or not to be", encoding="utf-8")
    ckpt = tmp_path / "m.ckpt"
    torch.save({"hyper_parameters": {"tokenizer_config": small_bpe.to_dict()}}, ckpt)
    assert main(["show", f"file={tmp_path / 't.txt'}", f"tokenizer={ckpt}"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"tokenizer: the tokenizer of {ckpt} (vocab 512)")
    assert out.splitlines()[-1].startswith(f"{len(small_bpe.encode('To be, or not to be'))} tokens, 19 characters")


def test_module_entry_point_subprocess() -> None:
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.run([sys.executable, "-m", "scratchllm.tokenizer", "show", "Hello world"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "15496" in proc.stdout and "995" in proc.stdout
    assert proc.stdout.splitlines()[-1] == "2 tokens, 11 characters, 11 bytes: 5.50 characters/token, 5.50 bytes/token"
