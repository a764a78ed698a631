"""Language routing: English / French / German / Spanish paragraphs identified >= 95% of the time by both backends
(offline: fastText's shipped lid.176.ftz, lingua), and documents routed to kept / removed by ``language.keep``."""

from __future__ import annotations

import random

import pytest

from scratchllm.data.curation import synthetic as syn
from scratchllm.data.curation.config import LanguageConfig
from scratchllm.data.curation.language import identify, paragraphs, scorer, shipped_fasttext_model, verdict
from scratchllm.errors import ConfigError

from .conftest import kept_ids, read_jsonl, write_jsonl

# Short original paragraphs, written for this test.
WRITTEN = {
    "en": [
        "The ferry was late again, so we waited on the pier and watched the gulls argue over a crust of bread.",
        "She keeps a notebook of every bird she hears at dawn, even the ones she cannot name yet.",
        "When the power failed, the whole street came outside and the children counted the stars.",
        "He repaired the fence with old planks from the barn, and it leaned only a little to the left.",
    ],
    "fr": [
        "Le traversier était encore en retard, alors nous avons attendu sur le quai en regardant les mouettes.",
        "Elle garde un carnet de tous les oiseaux qu'elle entend à l'aube, même ceux dont elle ignore le nom.",
        "Quand le courant a sauté, toute la rue est sortie et les enfants ont compté les étoiles.",
        "Il a réparé la clôture avec de vieilles planches de la grange, et elle penche à peine vers la gauche.",
    ],
    "de": [
        "Die Fähre hatte wieder Verspätung, also warteten wir am Steg und sahen den Möwen beim Streiten zu.",
        "Sie führt ein Heft über jeden Vogel, den sie im Morgengrauen hört, auch über die namenlosen.",
        "Als der Strom ausfiel, kam die ganze Straße nach draußen, und die Kinder zählten die Sterne.",
        "Er hat den Zaun mit alten Brettern aus der Scheune geflickt, und nun steht er nur ein wenig schief.",
    ],
    "es": [
        "El transbordador volvió a llegar tarde, así que esperamos en el muelle mirando a las gaviotas.",
        "Ella lleva un cuaderno con cada pájaro que oye al amanecer, incluso los que todavía no sabe nombrar.",
        "Cuando se fue la luz, toda la calle salió a la acera y los niños contaron las estrellas.",
        "Arregló la cerca con tablas viejas del granero, y ahora apenas se inclina un poco hacia la izquierda.",
    ],
}


def _paragraphs(rng: random.Random, per_language: int) -> list[tuple[str, str]]:
    out = [(lang, p) for lang, ps in WRITTEN.items() for p in ps]
    out += [(lang, syn.paragraph(lang, rng)) for lang in syn.LANGUAGES for _ in range(per_language)]
    return out


@pytest.mark.parametrize("backend", ["fasttext", "lingua"])
def test_paragraphs_identified(backend: str) -> None:
    cfg = LanguageConfig(backend=backend, lingua_languages=["en", "fr", "de", "es", "it", "pt", "nl"]
                         if backend == "lingua" else None)
    score = scorer(cfg)
    rng = random.Random(3)
    cases = _paragraphs(rng, 40 if backend == "fasttext" else 15)
    for lang in WRITTEN:
        hits = [identify(p, score, cfg.max_chars)[0] == lang for lg, p in cases if lg == lang]
        assert sum(hits) / len(hits) >= 0.95, (backend, lang, hits)


def test_shipped_model_and_scoring_rules() -> None:
    assert shipped_fasttext_model().name == "lid.176.ftz"
    cfg = LanguageConfig()
    score = scorer(cfg)
    # a document: short headings do not sink it, the length-weighted mean does
    doc = "ACT I\n\nScene 2.\n\n" + "\n".join(WRITTEN["en"])
    lang, conf = identify(doc, score, cfg.max_chars)
    assert lang == "en" and conf > 0.8
    # half French, half English: neither language is confident
    mixed = "\n\n".join(WRITTEN["fr"] + WRITTEN["en"])
    assert identify(mixed, score, cfg.max_chars)[1] < 0.65
    assert verdict("fr", 0.99, cfg) == ("language_fr", "fr 0.99")
    assert verdict("en", 0.5, cfg)[0] == "low_language_confidence" and verdict("en", 0.9, cfg) is None
    # paragraphs: merged up to 200 characters, newlines become spaces, long documents sampled across
    assert paragraphs("a\nb\n\nc", 4000) == ["a b c"]
    long = "\n\n".join(f"paragraph {i} " + "x" * 300 for i in range(100))
    sample = paragraphs(long, 4000)
    assert sum(map(len, sample)) <= 4000 and sample[0].startswith("paragraph 0 ")
    assert int(sample[-1].split()[1]) > 50  # the sample reaches the second half of the document


def test_bad_language_options(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        scorer(LanguageConfig(model_path=str(tmp_path / "lid.176.bin")))
    with pytest.raises(ConfigError, match="not an ISO 639-1 code"):
        scorer(LanguageConfig(backend="lingua", lingua_languages=["en", "xx"]))
    with pytest.raises(ConfigError, match="backend"):
        from .conftest import prepare_config

        prepare_config("input=x", "output=y", "language.backend=cld3")


def test_documents_routed(tmp_path, run_prepare) -> None:
    rng = random.Random(11)
    records, truth = [], {}
    for lang in syn.LANGUAGES:
        for i in range(25):
            doc_id = f"{lang}{i}"
            records.append({"id": doc_id, "text": syn.language_document(lang, rng, n_paragraphs=3)})
            truth[doc_id] = lang
    rng.shuffle(records)
    write_jsonl(tmp_path / "multi.jsonl", records)
    res = run_prepare(f"input={tmp_path / 'multi.jsonl'}", "prepare=minimal", "language.enabled=true",
                      "language.keep=[fr]", "near_dedup.enabled=false", "tokenizer=char", "keep_text=true")
    kept = kept_ids(res)
    removed = {r["id"]: r["reason"] for r in read_jsonl(res.output / "removed.jsonl")}
    correct = sum((truth[i] == "fr") == (i in kept) for i in truth)
    assert correct / len(truth) >= 0.95
    # every removed document names the language it was found to be in
    wrong = sum(removed[i] != f"language_{truth[i]}" for i in removed)
    assert wrong / max(1, len(removed)) <= 0.05
    detected = next(s for s in res.report["stages"] if s["stage"] == "language")["notes"]["detected"]
    assert set(detected) >= {"en", "fr", "de", "es"}
