"""Every command in README.md runs as written and exits 0, so a README command can never break silently.

Each ```bash line (and each ```python block) runs in a fresh folder laid out like a user's checkout: links to the
repository's `.venv`, `scripts/`, `conf/`, `src/` and `pyproject.toml`, and its own empty `logs/` and no
`data_cache/`, so nothing touches the repository. The command is the README's text with nothing added but tiny
step counts and sizes (readme_commands.shrink): no `paths.root_dir=`, no cache sharing. What a command needs from
an earlier step (a trained checkpoint, prepared shards, a trained tokenizer, a placeholder path such as
`path/to/hf-gpt2`) is put in place first by the NEEDS table, built once per session.
"""

from __future__ import annotations

import functools
import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.readme_commands import Command, readme_commands, shrink, strip_comment

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
# The checkout a README command assumes as its working directory. `bash scripts/setup.sh` runs for real through
# the links (it cds to scripts/.., i.e. the test's folder, and finds the stamp of the venv CI just built: a no-op).
CHECKOUT = (".venv", "scripts", "conf", "src", "pyproject.toml")
SHARED_TINY = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
TIMEOUT_S = 600

# Commands not run here, each with why (a needle matches a command containing it).
SKIP = {
    "-m pytest": "runs this whole suite, this file included; .ci/run runs exactly this command "
    "(test_ci_runs_the_readme_test_command)",
    "tensorboard --logdir": "starts a server that runs until it is stopped",
    "experiment=tinyshakespeare_char data.path": "the 15-minute recipe: at 2 steps it is the quick recipe's run "
    "(tested) on the micro model with compile (tested by the Training speed command) plus ~50 s of compiling; "
    "it composes in tests/training/test_configs.py",
}
# README commands that fail today and are being fixed elsewhere (needle → reason with the error line): strict, so
# the fix shows up as an XPASS failure that says to delete the entry. Empty: the sweep that crashed every user last
# wave (`${hydra:runtime.cwd}` in hydra.sweep.dir) runs here as written, and failed before its fix.
XFAIL: dict[str, str] = {}

# What a command needs in place before it runs, by a needle it contains → the Artifacts entries to copy in.
NEEDS = [
    ("corpus/**/*.jsonl", ["web_corpus"]),
    ("data.path=prepared/mine", ["prepared"]),
    ("input=data/my_corpus/", ["my_corpus"]),
    ("tokenizer.path=tokenizers/my-32k", ["bpe"]),
    ("tokenizer=tokenizers/my-32k", ["bpe"]),
    ("path/to/tinyshakespeare.txt", ["tinyshakespeare"]),
    ("path/to/hf-gpt2", ["hf_gpt2"]),
    ('load_hf("path/to/gpt2")', ["hf_gpt2_as_gpt2"]),
    ("ckpt_path=last", ["trained"]),
    ("<time>", ["trained"]),
    ("scratchllm.generate", ["trained"]),  # ckpt_path defaults to `last`
    ('load_for_generation("last"', ["trained"]),
    ('checkpoint.resolve("last")', ["trained"]),
    ("scratchllm.evaluate", ["trained"]),  # ckpt_path defaults to `last`
    ("prompts.txt", ["prompts"]),
]


def _env() -> dict[str, str]:
    """The user's environment: nothing of ours that redirects where runs, caches or configs go."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCRATCHLLM_", "PYTEST_"))}
    return {**env, "PYTHONUNBUFFERED": "1"}


def _run(text: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", text], cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=TIMEOUT_S)


def _setup_is_current() -> bool:
    """Whether `bash scripts/setup.sh` is a no-op (its stamp, same formula as the script). Run from a test's folder
    when it is not, it would reinstall the package in editable mode from that temporary folder."""
    want = subprocess.run("cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16", shell=True, cwd=REPO,
                          capture_output=True, text=True).stdout.strip()
    stamp = REPO / ".venv" / ".installed"
    return stamp.is_file() and stamp.read_text().split() == [want, os.environ.get("TORCH_SPEC", "torch==2.13.0")]


def _checkout(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in CHECKOUT:
        (folder / name).symlink_to(REPO / name)
    return folder


def _check(proc: subprocess.CompletedProcess, text: str) -> None:
    assert proc.returncode == 0, f"`{text}` exited {proc.returncode}:\n{proc.stderr[-3000:]}\n{proc.stdout[-1000:]}"


def _speeches_documents(n: int, seed: int) -> list[str]:
    """Distinct English prose documents (collages of Shakespeare's speeches) that pass the web filters."""
    from scratchllm.data.curation import synthetic as syn

    rng = random.Random(seed)
    speeches = syn.shakespeare_speeches()
    return [syn.collage(rng, speeches, 12) for _ in range(n)]


class Artifacts:
    """What earlier README steps leave behind, each built once (lazily) in a session folder; ``place`` copies
    one into a test's folder at the path the README names."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def place(self, name: str, folder: Path) -> None:
        source, target = getattr(self, name)()
        dest = folder / target
        dest.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, dest, dirs_exist_ok=True)  # copies: a resume writes into logs/
        else:
            shutil.copy2(source, dest)

    def _built(self, name: str, command: str, needs: tuple[str, ...] = ()) -> Path:
        shutil.rmtree(self.root / name, ignore_errors=True)  # a failed build is retried from scratch
        folder = _checkout(self.root / name)
        for need in needs:
            self.place(need, folder)
        _check(_run(command, folder), command)
        return folder

    @functools.cache
    def trained(self) -> tuple[Path, str]:
        """`logs/train/runs/<time>/checkpoints/last.ckpt` of a 2-step default run."""
        folder = self._built("trained", shrink(".venv/bin/python -m scratchllm.train"))
        return folder / "logs", "logs"

    @functools.cache
    def web_corpus(self) -> tuple[Path, str]:
        path = self.root / "web_corpus" / "docs.jsonl"
        path.parent.mkdir(parents=True)
        with open(path, "w", encoding="utf-8") as f:
            for i, text in enumerate(_speeches_documents(60, seed=1)):
                f.write(json.dumps({"id": f"doc{i}", "text": text}) + "\n")
        return path, "corpus/web/docs.jsonl"

    @functools.cache
    def prepared(self) -> tuple[Path, str]:
        folder = self._built("prepared", ".venv/bin/python -m scratchllm.prepare input='corpus/**/*.jsonl' "
                             "output=prepared/mine", needs=("web_corpus",))
        return folder / "prepared" / "mine", "prepared/mine"

    @functools.cache
    def my_corpus(self) -> tuple[Path, str]:
        folder = self.root / "my_corpus"
        folder.mkdir(parents=True)
        for i, text in enumerate(_speeches_documents(8, seed=2)):
            (folder / f"part{i}.txt").write_text(text, encoding="utf-8")
        return folder, "data/my_corpus"

    @functools.cache
    def bpe(self) -> tuple[Path, str]:
        folder = self._built("bpe", ".venv/bin/python -m scratchllm.tokenizer train input=data/my_corpus/ "
                             "output=tokenizers/my-32k vocab_size=32768", needs=("my_corpus",))
        return folder / "tokenizers" / "my-32k", "tokenizers/my-32k"

    @functools.cache
    def tinyshakespeare(self) -> tuple[Path, str]:
        if not SHARED_TINY.is_file():  # hash-checked by the corpus: only the real file will do
            pytest.skip(f"needs the tinyshakespeare file at {SHARED_TINY}")
        return SHARED_TINY, "path/to/tinyshakespeare.txt"

    @functools.cache
    def _hf_folder(self) -> Path:
        """A tiny random GPT-2 in transformers' format with GPT-2's 50,257-id vocabulary (so it gets GPT-2's
        tokenizer, as a real GPT-2 folder would)."""
        from scratchllm.interop.hf import save_hf
        from scratchllm.model import GPT, ModelConfig

        cfg = ModelConfig(vocab_size=50257, context_length=64, n_layer=2, n_head=2, n_embd=32)
        return save_hf(GPT(cfg), self.root / "hf-gpt2")

    def hf_gpt2(self) -> tuple[Path, str]:
        return self._hf_folder(), "path/to/hf-gpt2"

    def hf_gpt2_as_gpt2(self) -> tuple[Path, str]:
        return self._hf_folder(), "path/to/gpt2"

    @functools.cache
    def prompts(self) -> tuple[Path, str]:
        path = self.root / "prompts.txt"
        path.write_text("ROMEO:\nJULIET:\n", encoding="utf-8")
        return path, "prompts.txt"


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    return Artifacts(tmp_path_factory.mktemp("readme_artifacts"))


def _marked(command: Command):
    marks = [pytest.mark.skip(reason=r) for needle, r in SKIP.items() if needle in command.text]
    marks += [pytest.mark.xfail(strict=True, reason=r) for needle, r in XFAIL.items() if needle in command.text]
    return pytest.param(command, id=command.id, marks=marks)


COMMANDS = readme_commands(README)


@pytest.mark.parametrize("command", [_marked(c) for c in COMMANDS])
def test_readme_command(command: Command, tmp_path: Path, artifacts: Artifacts) -> None:
    if "scripts/setup.sh" in command.text and not _setup_is_current():
        pytest.fail("the .venv is older than pyproject.toml or scripts/setup.sh: run `bash scripts/setup.sh` first")
    folder = _checkout(tmp_path / "checkout")
    for needle, names in NEEDS:
        if needle in command.text:
            for name in names:
                artifacts.place(name, folder)
    if command.lang == "python":
        (folder / "readme_block.py").write_text(command.text, encoding="utf-8")
        text = ".venv/bin/python readme_block.py"
    else:
        text = shrink(command.text)
        if "<time>" in text:  # the run folder the README leaves to the reader: the one run there is
            (run,) = (folder / "logs" / "train" / "runs").iterdir()
            text = text.replace("<time>", run.name)
    _check(_run(text, folder), text)


def test_tables_match_readme_commands() -> None:
    """Every skip, xfail and fixture entry still matches a README command (a stale entry would hide nothing)."""
    texts = [c.text for c in COMMANDS]
    for needle in [*SKIP, *XFAIL, *(n for n, _ in NEEDS)]:
        assert any(needle in t for t in texts), f"no README command contains {needle!r}; drop the entry"
    assert len(COMMANDS) >= 20, "README parsing found too few commands"


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run's last line is the README's test command, and both quick-start commands set up .venv the same way."""
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line.strip()]
    quick = [c.text for c in COMMANDS if "scripts/setup.sh" in c.text]
    assert len(quick) == 2, quick
    assert ci[-1] == next(t for t in quick if t.endswith("-m pytest"))
    setup = ci[-1].split("&&")[0]
    assert all(t.startswith(setup) for t in quick), quick


def test_parsing_and_shrinking() -> None:
    """What the commands above rely on: continuations joined, comments dropped (not `#` inside quotes), a tiny
    value replacing the README's own instead of a second override, and overrides kept before a redirect."""
    assert strip_comment("""run 'a # b' x=1   # note""") == "run 'a # b' x=1"
    assert not any("#" in c.text or "\\" in c.text for c in COMMANDS if c.lang == "bash")
    joined = next(c.text for c in COMMANDS if "generate ckpt_path=logs/train/runs/<time>" in c.text)
    assert joined.endswith('prompt="ROMEO:" max_new_tokens=300 temperature=0.8 top_k=50 seed=1')
    train = shrink(".venv/bin/python -m scratchllm.train model=micro trainer.max_steps=500 precision=bf16-mixed")
    assert train.split().count("trainer.max_steps=2") == 1 and "500" not in train and "precision=bf16-mixed" in train
    assert (shrink(".venv/bin/python -m scratchllm.generate interactive=true < prompts.txt")
            == ".venv/bin/python -m scratchllm.generate interactive=true max_new_tokens=8 < prompts.txt")
    show = ".venv/bin/python -m scratchllm.tokenizer show x"
    assert shrink(show) == show
