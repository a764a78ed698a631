"""``python -m scratchllm.generate``: real processes for the end-to-end paths, in-process runs for the rest."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scratchllm.generate import main
from scratchllm.generation import SamplingConfig, generate
from scratchllm.generation.loading import load_for_generation
from scratchllm.generation.session import GenerateOptions, run_session
from scratchllm.generation.text import encode_prompt


def run_module(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1"}
    env.pop("SCRATCHLLM_ROOT", None)
    return subprocess.run(
        [sys.executable, "-m", "scratchllm.generate", *args], cwd=cwd, env=env, input=stdin, capture_output=True,
        text=True, timeout=120,
    )


def greedy_text(ckpt: Path, prompt: str, n: int, dtype: str = "float32") -> str:
    model, tokenizer = load_for_generation(ckpt, device="cpu", dtype=dtype)
    return tokenizer.decode(generate(model, encode_prompt(tokenizer, prompt), n, temperature=0,
                                     eot_id=tokenizer.eot_id))


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# ----------------------------------------------------------------------------------- real processes
def test_one_prompt_from_the_newest_checkpoint(trained_root: Path, trained_ckpt: Path) -> None:
    before = tree(trained_root)
    proc = run_module("prompt=ROMEO:", "max_new_tokens=24", "temperature=0", cwd=trained_root)  # ckpt_path=last
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == "ROMEO:" + greedy_text(trained_ckpt, "ROMEO:", 24) + "\n"
    assert "loaded tiny-char" in proc.stderr and "24 tokens in" in proc.stderr and "tokens/s" in proc.stderr
    assert tree(trained_root) == before  # no Hydra run folder, no .hydra/, no log file


def test_interactive_answers_each_prompt_in_its_own_block(trained_root: Path, trained_ckpt: Path) -> None:
    # the empty line starts from "\n" (char vocab, no end-of-text); W and € are not in the vocabulary
    prompts = ["ROMEO:", "What, ho!", "", "wé€ll"]
    proc = run_module(
        f"ckpt_path={trained_ckpt}", "interactive=true", "max_new_tokens=6", "temperature=0",
        cwd=trained_root, stdin="".join(p + "\n" for p in prompts),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    # each prompt echoed, then its continuation, a newline and a blank line: 4 prompts, 4 blocks
    assert proc.stdout == "".join(p + greedy_text(trained_ckpt, p, 6) + "\n\n" for p in prompts)
    assert proc.stderr.count(" tokens in ") == 4 and proc.stderr.count("loaded ") == 1  # loaded once
    notes = [line for line in proc.stderr.splitlines() if line.startswith("note:")]
    assert notes == [f"note: 1 prompt character is not in the model's vocabulary and was replaced by <unk>: {c!r}"
                     for c in "W€"]  # one line per prompt that has any


def test_interactive_refuses_a_bad_prompt_and_goes_on(trained_ckpt: Path) -> None:
    options = GenerateOptions(ckpt_path=str(trained_ckpt), interactive=True, echo_prompt=False, max_new_tokens=5,
                              sampling=SamplingConfig(temperature=0), tokenizer={"path": None, "unknown": "error"})
    out, err = io.StringIO(), io.StringIO()
    run_session(options, stdin=io.StringIO("ROMEO:\nJULIET:\nwhat, ho!\n"), stdout=out, stderr=err)
    # no echo: continuations only, still one block each; JULIET's letters J, U, L, I, T are not in the vocabulary
    assert out.getvalue() == "".join(greedy_text(trained_ckpt, p, 5) + "\n\n" for p in ("ROMEO:", "what, ho!"))
    errors = [line for line in err.getvalue().splitlines() if line.startswith("error:")]
    assert errors == ["error: 5 prompt characters are not in the model's vocabulary: 'J', 'U', 'L', 'I', 'T'; "
                      "remove them from the prompt, or set tokenizer.unknown=replace to replace them with <unk>"]


# ----------------------------------------------------------------------------------- in process
class Recorder:
    """A stdout that records each write and each flush, to see text leave as it is produced."""

    def __init__(self) -> None:
        self.events: list[str | None] = []  # a string per write, None per flush

    def write(self, text: str) -> int:
        self.events.append(text)
        return len(text)

    def flush(self) -> None:
        self.events.append(None)

    def text(self) -> str:
        return "".join(e for e in self.events if e)


def test_text_is_flushed_piece_by_piece(trained_ckpt: Path, tmp_path: Path) -> None:
    out, err = Recorder(), Recorder()
    options = GenerateOptions(ckpt_path=str(trained_ckpt), prompt="ROMEO:", max_new_tokens=12,
                              sampling=SamplingConfig(temperature=0))
    run_session(options, stdout=out, stderr=err)  # type: ignore[arg-type]
    assert out.text() == "ROMEO:" + greedy_text(trained_ckpt, "ROMEO:", 12) + "\n"
    writes = [i for i, e in enumerate(out.events) if e]
    assert len(writes) == 1 + 12 + 1  # the prompt, one piece per generated character, the final newline
    assert all(out.events[i + 1] is None for i in writes)  # every piece is flushed at once
    assert "12 tokens in" in err.text()


def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["scratchllm.generate", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    "args, message",
    [
        (("top_p=1.5",), "error: top_p must be in (0, 1]"),
        (("temperature=-1",), "error: temperature must be a number >= 0"),
        (("seed=1.5",), "error: seed must be an integer"),
        (("on_overflow=wrap",), "error: on_overflow='wrap' is not known; choose one of: slide, stop"),
        (("max_new_tokens=-3",), "error: max_new_tokens must be an integer >= 0"),
        (("dtype=float64",), "error: dtype='float64' is not supported"),
        (("top_k=5", "nucleus=0.9"), "error: nucleus"),  # the precheck's unknown-key line
    ],
)
def test_bad_options_are_one_line_errors_before_loading(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    monkeypatch.chdir(tmp_path)  # no checkpoint anywhere here: the options must fail first
    code, out, err = run_main(monkeypatch, capsys, *args)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), err


def test_missing_checkpoint_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    for arg, words in ((f"ckpt_path={tmp_path / 'nope.ckpt'}", [str(tmp_path / "nope.ckpt"), "ckpt_path=last"]),
                       ("ckpt_path=last", ["ckpt_path=last", "no checkpoints/last.ckpt"])):
        code, _, err = run_main(monkeypatch, capsys, arg)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and all(w in lines[0] for w in words), err
    assert list(tmp_path.iterdir()) == []


def test_hf_folder_with_gpt2_tokenizer_and_stop_string(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, gpt2_vocab_hf: Path, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(
        monkeypatch, capsys, f"ckpt_path={gpt2_vocab_hf}", "prompt=Hello", "max_new_tokens=8", "temperature=0",
        "device=cpu",
    )
    assert code == 0, err
    model, tokenizer = load_for_generation(gpt2_vocab_hf, device="cpu", dtype="float32")
    text = tokenizer.decode(generate(model, tokenizer.encode("Hello"), 8, temperature=0, eot_id=tokenizer.eot_id))
    assert out == "Hello" + text + "\n" and "tokenizer gpt2" in err
    # the same run stopped by a string taken from its own output: everything before it, nothing after
    words = text.split()
    stop = next(w for w in words if w != words[0])  # the first word that is not the first one
    assert stop.isalnum()  # safe to write in an override
    code, out, _ = run_main(
        monkeypatch, capsys, f"ckpt_path={gpt2_vocab_hf}", "prompt=Hello", "max_new_tokens=8", "temperature=0",
        f"stop=[{stop}]",
    )
    assert code == 0 and out == "Hello" + text[: text.index(stop)] + "\n"


def test_bfloat16_decoding_matches_a_bf16_model(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, trained_ckpt: Path
) -> None:
    code, out, err = run_main(
        monkeypatch, capsys, f"ckpt_path={trained_ckpt}", "prompt=ROMEO:", "max_new_tokens=10", "temperature=0",
        "dtype=bfloat16", "use_cache=false",
    )
    assert code == 0, err
    assert out == "ROMEO:" + greedy_text(trained_ckpt, "ROMEO:", 10, dtype="bfloat16") + "\n"
    assert "in bfloat16" in err


def test_flat_sampling_keys_sample_like_generate_with_that_config(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, trained_ckpt: Path
) -> None:
    keys = dict(temperature=1.5, top_k=10, top_p=0.95, repetition_penalty=1.3, seed=7, on_overflow="stop")
    code, out, err = run_main(monkeypatch, capsys, f"ckpt_path={trained_ckpt}", "prompt=ROMEO:", "max_new_tokens=12",
                              "echo_prompt=false", *(f"{k}={v}" for k, v in keys.items()))
    assert code == 0, err
    model, tokenizer = load_for_generation(trained_ckpt, device="cpu", dtype="float32")
    ids = generate(model, encode_prompt(tokenizer, "ROMEO:"), 12, sampling=SamplingConfig(**keys),
                   eot_id=tokenizer.eot_id)
    assert out == tokenizer.decode(ids) + "\n" and out != greedy_text(trained_ckpt, "ROMEO:", 12) + "\n"


def test_prompt_and_stop_read_backslash_escapes() -> None:
    options = GenerateOptions(prompt=r"Line one\nLine two\ttab \\n kept", stop=[r"\n\n", r"\nabla"])
    assert options.prompt == "Line one\nLine two\ttab \\n kept"
    assert options.stop == ["\n\n", "\nabla"]  # a literal backslash is written \\
    assert GenerateOptions(stop="END").stop == ["END"]


def test_without_a_tokenizer_prompt_and_output_are_token_ids(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path, tiny_model
) -> None:
    from scratchllm.interop.hf import save_hf

    model = tiny_model(tie_embeddings=True)
    folder = save_hf(model, tmp_path / "hf65")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(monkeypatch, capsys, f"ckpt_path={folder}", "prompt=5 17 3", "max_new_tokens=6",
                              "temperature=0")
    assert code == 0, err
    expected = generate(model, [5, 17, 3], 6, temperature=0)
    assert out == "5 17 3 " + "".join(f"{i} " for i in expected) + "\n"
    assert "tokenizer none" in err
    code, _, err = run_main(monkeypatch, capsys, f"ckpt_path={folder}", "prompt=hello")
    assert code == 2 and err.strip().splitlines()[-1].startswith("error: no tokenizer is known for this model")
