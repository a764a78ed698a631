"""Normalisation and the quality filters: signals computed right, junk (keyword spam, number tables,
boilerplate, placeholder text) removed, clean prose (English text and Shakespeare) kept."""

from __future__ import annotations

import random
import unicodedata

import pytest

from scratchllm.data.curation import synthetic as syn
from scratchllm.data.curation.config import NormalizeConfig, QualityConfig
from scratchllm.data.curation.normalize import normalize_text
from scratchllm.data.curation.quality import ngram_fractions, signals, verdict

from .conftest import kept_ids, read_jsonl, write_jsonl


def test_normalize() -> None:
    cfg = NormalizeConfig()
    decomposed = unicodedata.normalize("NFD", "café")
    assert len(decomposed) == 5 and normalize_text(decomposed, cfg) == "café"
    text = "\ufeffTitle\r\n\r\n\r\n\r\nfirst\u00a0line  with   gaps \t\nsecond\x00 line\x1b\u200b\n    indented  code\n\n\n"
    assert normalize_text(text, cfg) == "Title\n\nfirst line with gaps\nsecond line\n    indented code"
    trim = NormalizeConfig(whitespace="trim")
    assert normalize_text("a  b \n\tc", trim) == "a  b\n\tc"
    assert normalize_text(" \n\u3000\n", cfg) == ""
    assert normalize_text("ﬁne", NormalizeConfig(form="NFKC")) == "fine" and normalize_text("ﬁne", cfg) == "ﬁne"


def test_signals_by_hand() -> None:
    cfg = QualityConfig()
    s = signals("One two three.\nOne two three.\n\nFour 5 #!", cfg)
    assert s.words == 9 and s.duplicate_line_fraction == pytest.approx(1 / 3)  # "#!" -> the word "#"
    assert s.alpha_word_fraction == pytest.approx(7 / 9)
    assert s.digit_ratio == pytest.approx(1 / 31) and s.symbol_ratio == pytest.approx(1 / 31)  # of 31 non-space
    assert s.no_terminal_punct_fraction == pytest.approx(0.0)  # "#!" ends with "!"
    # repetition: "a b" is the top 2-gram, 3 times x 2 chars of 9 word chars
    top, dup = ngram_fractions("a b a b a b c".split() + ["xx"], [2], [3])
    assert top[2] == pytest.approx(6 / 9)
    # duplicated 3-grams: "a b a", "b a b" repeat and cover words 0..5 (6 chars of 9)
    assert dup[3] == pytest.approx(6 / 9)
    assert ngram_fractions(["only", "unique", "words", "here"], [2], [3]) == ({2: 0.0}, {3: 0.0})


# Clean prose, written for this test: ordinary paragraphs that every filter must let through.
PROSE = [
    "The orchard behind the school had been planted by the first teacher, a patient woman who believed that "
    "children should know where apples come from. Every autumn the pupils still pick the fruit, sort it into "
    "crates and sell it at the village fair. The money pays for books, and the bruised apples become a sauce "
    "that the cook serves warm on the last Friday of October.",
    "Our train stopped in a field for almost an hour. Nobody explained why. At first the passengers grumbled, "
    "then they began to talk to one another, and by the time the engine shuddered back to life a retired "
    "engineer had drawn a map of the line on a napkin, a student had shared her oranges, and two strangers had "
    "discovered that they grew up on the same street.",
    "Bread dough rewards attention more than strength. Mix the flour and water until no dry patches remain, "
    "then leave it alone for half an hour so the flour can drink. Fold it gently every so often during the "
    "first two hours, and you will feel it change from a sticky mass into something smooth and alive that "
    "holds its shape on the counter.",
    "The museum keeps its oldest maps in a cool room without windows. Visitors may look at them only on "
    "Thursday afternoons, wearing cotton gloves, while a guard stands by the door. The coastlines are wrong "
    "in charming ways: islands float where there is open sea, rivers run uphill, and a careful hand has "
    "painted a whale beside every unexplored bay.",
    "My grandfather repaired clocks in a workshop no bigger than a wardrobe. He never hurried, and he never "
    "threw away a screw. When a customer asked how long a repair would take, he would smile and say that a "
    "clock is the one machine that can wait for itself. Most of them came back ticking within the week.",
    "Fog rolled over the harbour before dawn and did not lift until noon. The fishing boats stayed tied to the "
    "quay, their crews mending nets and drinking tea in the cabin of the largest one. By evening the sky had "
    "cleared completely, and the whole town came down to the water to watch the lights of the ships far out.",
]


def _english_doc(rng: random.Random) -> str:
    return "\n\n".join(rng.sample(PROSE, 2))


def test_junk_removed_prose_kept() -> None:
    cfg = QualityConfig()
    rng = random.Random(5)
    speeches = syn.shakespeare_speeches()
    for _ in range(20):
        assert verdict(syn.keyword_spam(rng), cfg) is not None
        assert verdict(syn.number_table(rng), cfg) is not None
        assert verdict(syn.boilerplate(rng), cfg) is not None
        assert verdict(_english_doc(rng), cfg) is None
        assert verdict(syn.collage(rng, speeches, 20), cfg) is None
    assert verdict("Lorem ipsum dolor sit amet. " + _english_doc(rng), cfg) == ("blocklist", "'lorem ipsum'")
    assert verdict("Too short to be a document.", cfg)[0] == "too_few_words"
    link_list = "\n".join(f"- {sentence.rstrip('.')}." for para in PROSE for sentence in para.split(". "))
    assert verdict(link_list, cfg)[0] == "bullet_lines"


def test_quality_stage_in_pipeline(tmp_path, run_prepare) -> None:
    rng = random.Random(9)
    speeches = syn.shakespeare_speeches()
    records, junk = [], set()
    for i in range(30):
        records.append({"id": f"prose{i}", "text": _english_doc(rng) if i % 2 else syn.collage(rng, speeches, 15)})
    for i, make in enumerate([syn.keyword_spam, syn.number_table, syn.boilerplate] * 6):
        records.append({"id": f"junk{i}", "text": make(rng)})
        junk.add(f"junk{i}")
    rng.shuffle(records)
    write_jsonl(tmp_path / "mixed.jsonl", records)
    res = run_prepare(f"input={tmp_path / 'mixed.jsonl'}", "tokenizer=char", "keep_text=true", "exact_dedup.enabled=false",
                      "near_dedup.enabled=false", "language.enabled=false")
    assert kept_ids(res) == {f"prose{i}" for i in range(30)}
    removed = read_jsonl(res.output / "removed.jsonl")
    assert {r["id"] for r in removed} == junk and {r["stage"] for r in removed} == {"quality"}
    reasons = next(s for s in res.report["stages"] if s["stage"] == "quality")["removed"]
    assert sum(reasons.values()) == 18 and len(reasons) >= 3  # three kinds of junk, told apart


def test_books_profile_keeps_plays(tmp_path) -> None:
    from .conftest import prepare_config

    play = "\n\n".join(syn.shakespeare_speeches()[:400])
    web, books = prepare_config("input=x", "output=y").quality, prepare_config("input=x", "output=y",
                                                                               "prepare=books").quality
    s = signals(play, web)
    assert s.no_terminal_punct_fraction > 0.5 and s.duplicate_line_fraction > 0.1  # verse and speaker lines
    assert verdict(play, books) is None
