"""The tour in docs/ never drifts from the code: every snippet runs, every link and symbol it names exists, and
its pictures can be drawn again.

- Each chapter's ```bash lines and ```python blocks run in order in a fresh folder laid out like a checkout, with
  a two-step model already trained there (the README test's machinery: tests/readme_commands.py parses and
  shrinks the commands, tests/test_readme.py lays out the folder and trains the model).
- A link to a source file must point at a file that exists; a link whose text is a code span naming a Python
  symbol (``[`GPT.forward`](../src/scratchllm/model/gpt.py)``) must name something defined in that file, so
  moving or renaming code fails here. Line anchors (``#L42``) are refused: they drift silently.
- ``docs/make_figures.py`` draws every picture the chapters show, from the two-step model, into a temporary
  folder; every table row a chapter shows is one of docs/figures/tables.md, what it computed for the tour.
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

from tests.readme_commands import Command, readme_commands, shrink
from tests.test_readme import Artifacts, _check, _checkout, _run

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
INDEX = DOCS / "README.md"
CHAPTERS = sorted(DOCS.glob("[0-9][0-9]-*.md"))
PAGES = [INDEX, *CHAPTERS]
LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")
SYMBOL = re.compile(r"^`([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)`$")


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    return Artifacts(tmp_path_factory.mktemp("docs_artifacts"))


def _links(page: Path) -> list[tuple[bool, str, str, int]]:
    """(is an image, text, target, line) of every Markdown link of ``page`` outside fenced blocks."""
    found, fenced = [], False
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            found += [(bang == "!", text, target, number) for bang, text, target in LINK.findall(line)]
    return found


def _defined(tree: ast.Module, dotted: str) -> bool:
    """Whether ``dotted`` (``name`` or ``Class.member``…) is defined in a module's AST: a def, class, assignment
    or annotated field (a dataclass field counts), looked up scope by scope."""
    scope: list[ast.stmt] = tree.body
    for part in dotted.split("."):
        hit = None
        for node in scope:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == part:
                hit = node
            elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == part for t in node.targets):
                hit = node
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == part:
                hit = node
        if hit is None:
            return False
        scope = getattr(hit, "body", [])
    return True


def test_symbol_check_sees_a_moved_symbol() -> None:
    tree = ast.parse("class A:\n    def f(self): ...\nX = 1\nclass C:\n    y: int = 0\ndef g(): ...\n")
    assert all(_defined(tree, name) for name in ("A", "A.f", "X", "C.y", "g"))
    assert not any(_defined(tree, name) for name in ("A.g", "f", "C.z", "g.x", "B"))


def test_the_tour_is_linked_and_complete() -> None:
    """The README links the tour from its top; the index links every chapter; every chapter shows at least one
    picture or table the template computed (docs/figures/)."""
    top = (REPO / "README.md").read_text(encoding="utf-8").splitlines()[:8]
    assert any("docs/README.md" in line for line in top), "README.md's first lines must link docs/README.md"
    assert len(CHAPTERS) >= 9, [c.name for c in CHAPTERS]
    linked = {target for _, _, target, _ in _links(INDEX)}
    for chapter in CHAPTERS:
        assert chapter.name in linked, f"docs/README.md does not link {chapter.name}"
        text = chapter.read_text(encoding="utf-8")
        images = [t for img, _, t, _ in _links(chapter) if img and t.startswith("figures/")]
        assert images or "figures/tables.md" in text, f"{chapter.name} shows no picture or table from docs/figures/"
        assert readme_commands(chapter), f"{chapter.name} has no ```bash or ```python snippet"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_and_symbols_exist(page: Path) -> None:
    problems = []
    for _, text, target, line in _links(page):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue  # a web address or a heading of this page
        path_part, _, anchor = target.partition("#")
        where = f"{page.name}:{line} [{text}]({target})"
        if re.fullmatch(r"L\d+(-L\d+)?", anchor):
            problems.append(f"{where}: line anchors drift; name the symbol in the link text instead")
        path = (page.parent / path_part).resolve()
        if not path.exists():
            problems.append(f"{where}: {path_part} does not exist")
            continue
        symbol = SYMBOL.match(text)
        if symbol and path.suffix == ".py" and not text.strip("`").endswith((".py", ".yaml")):
            if not _defined(ast.parse(path.read_text(encoding="utf-8")), symbol.group(1)):
                problems.append(f"{where}: {symbol.group(1)} is not defined in {path_part}")
    assert not problems, "\n".join(problems)


def test_chapter_tables_are_the_computed_ones() -> None:
    """Every table row a chapter shows is a row of docs/figures/tables.md (what make_figures.py computed), so
    redrawing the figures without updating the chapters, or a hand-edited number, is caught."""
    computed = set((DOCS / "figures" / "tables.md").read_text(encoding="utf-8").splitlines())
    for chapter in CHAPTERS:
        fenced = False
        for number, line in enumerate(chapter.read_text(encoding="utf-8").splitlines(), start=1):
            fenced = not fenced if line.startswith("```") else fenced
            if not fenced and line.startswith("|"):
                assert line in computed, f"{chapter.name}:{number}: this table row is not in figures/tables.md"


def test_snippets_call_the_package() -> None:
    """Snippets use the template, they do not copy it: every python block imports scratchllm and defines no
    module of its own."""
    for chapter in CHAPTERS:
        for command in readme_commands(chapter):
            if command.lang == "python":
                where = f"{chapter.name}:{command.line}"
                assert "scratchllm" in command.text, f"{where}: the snippet does not use the package"
                assert not re.search(r"class \w+\((nn\.)?Module\)", command.text), f"{where} copies model code"


def _trained_run(folder: Path) -> str:
    (run,) = (folder / "logs" / "train" / "runs").iterdir()
    return run.name


def test_the_index_commands_are_the_readme_quick_start() -> None:
    """docs/README.md's only command is the README's first quick-start command, which tests/test_readme.py runs
    (so it is not run twice)."""
    index = [c.text for c in readme_commands(INDEX)]
    quick = [c.text for c in readme_commands(REPO / "README.md") if "scripts/setup.sh" in c.text]
    assert index and all(text in quick for text in index), index


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_chapter_snippets_run(chapter: Path, tmp_path: Path, artifacts: Artifacts) -> None:
    """A chapter's snippets, in order, in one folder (a later one may use what an earlier one wrote)."""
    folder = _checkout(tmp_path / "checkout")
    artifacts.place("trained", folder)
    run = _trained_run(folder)
    for command in readme_commands(chapter):
        text = _runnable(command, folder, run)
        _check(_run(text, folder), f"{chapter.name}:{command.line}: {text}")


def _runnable(command: Command, folder: Path, run: str) -> str:
    if command.lang == "python":
        script = folder / f"snippet_{command.line}.py"
        script.write_text(command.text.replace("<time>", run), encoding="utf-8")
        return f".venv/bin/python {script.name}"
    return shrink(command.text).replace("<time>", run)


@pytest.mark.slow
def test_figures_regenerate(tmp_path: Path, artifacts: Artifacts) -> None:
    """docs/make_figures.py draws every picture the chapters show (here from a two-step model)."""
    folder = _checkout(tmp_path / "checkout")
    artifacts.place("trained", folder)
    ckpt = f"logs/train/runs/{_trained_run(folder)}/checkpoints/last.ckpt"
    out = tmp_path / "figures"
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "python"), str(DOCS / "make_figures.py"), "--ckpt", ckpt,
                           "--out", str(out), "--chars", "500"], cwd=folder, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    shown = {t.split("/", 1)[1] for page in CHAPTERS for img, _, t, _ in _links(page) if img and
             t.startswith("figures/")}
    assert shown, "no chapter shows a picture"
    missing = [name for name in sorted(shown) if not (out / name).is_file() or (out / name).stat().st_size < 1000]
    assert not missing, f"make_figures.py did not draw {missing}"
    tables = (out / "tables.md").read_text(encoding="utf-8")
    assert tables.count("### ") >= 9, tables
