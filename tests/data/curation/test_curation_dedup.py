"""Exact and near-duplicate removal against planted ground truth: recall and precision >= 0.95, one document kept
per cluster, and MinHash estimates that track exact Jaccard."""

from __future__ import annotations

import random

import numpy as np
import pytest

from scratchllm.data.curation import synthetic as syn
from scratchllm.data.curation.config import NearDedupConfig
from scratchllm.data.curation.dedup import ExactDeduplicator, NearDeduplicator, jaccard, shingles, signature

from .conftest import kept_ids, read_jsonl, write_jsonl

SIZE = NearDedupConfig().shingle_size


@pytest.fixture(scope="module")
def speeches() -> tuple[str, ...]:
    return syn.shakespeare_speeches()


def test_shingles_and_jaccard() -> None:
    assert shingles("One two, THREE four five six", 5) == {"one two three four five", "two three four five six"}
    assert shingles("Too short", 5) == {"too short"} and shingles("!!!", 5) == set()
    a, b = shingles("a b c d e f g", 5), shingles("a b c d e f h", 5)
    assert jaccard(a, b) == pytest.approx(2 / 4)


def test_minhash_estimate_tracks_jaccard(speeches) -> None:
    rng = random.Random(1)
    cfg = NearDedupConfig()
    errors = []
    for _ in range(40):
        base = syn.collage(rng, speeches, 10)
        other = syn.perturb(base, rng, rng.uniform(0.0, 0.1))
        exact = jaccard(shingles(base, SIZE), shingles(other, SIZE))
        est = float(np.mean(signature(base, cfg) == signature(other, cfg)))
        errors.append(est - exact)
    errors = np.asarray(errors)
    assert abs(errors.mean()) < 0.02 and np.abs(errors).max() < 0.15  # unbiased; ~0.04 standard error


def test_dedup_units() -> None:
    ex = ExactDeduplicator()
    assert ex.check("a", "same text") is None and ex.check("b", "same text") == "a" and ex.check("c", "other") is None
    near = NearDeduplicator(NearDedupConfig())
    cfg = NearDedupConfig()
    text = " ".join(f"w{i}" for i in range(200))
    assert near.check("x", signature(text, cfg)) is None
    hit = near.check("y", signature(text.replace("w100 ", "zz "), cfg))
    assert hit is not None and hit[0] == "x" and hit[1] > 0.9 and hit[2] == "x"
    # a chain: v ~ u (Jaccard 0.81), w ~ v (0.81) but w is far from u (0.66): w still joins u's cluster through v
    def words(a: int, b: int) -> str:
        return " ".join(f"c{i}" for i in range(a, b))

    assert near.check("u", signature(words(0, 200), cfg)) is None
    assert near.check("v", signature(words(20, 220), cfg))[::2] == ("u", "u")
    assert near.check("w", signature(words(40, 240), cfg))[::2] == ("u", "v")
    assert near.check("none", None) is None  # no words: nothing to compare


def _planted_corpus(speeches, rng: random.Random):
    """Originals, exact copies (respelled), near copies (exact Jaccard >= 0.8) and look-alikes (Jaccard ~0.3)."""
    records, clusters, negatives = [], {}, set()
    originals = [syn.collage(rng, speeches, 12) for _ in range(160)]
    for i, text in enumerate(originals):
        records.append({"id": f"orig{i}", "text": text})
        clusters[f"orig{i}"] = i
    for k in range(40):  # exact duplicates, spelled differently
        i = rng.randrange(len(originals))
        records.append({"id": f"exact{k}", "text": syn.respell(originals[i], rng)})
        clusters[f"exact{k}"] = i
    k = 0
    while k < 60:  # near duplicates with exact Jaccard >= 0.8
        i = rng.randrange(len(originals))
        copy = syn.perturb(originals[i], rng, rng.uniform(0.003, 0.03))
        if jaccard(shingles(copy, SIZE), shingles(originals[i], SIZE)) < 0.8 or copy == originals[i]:
            continue
        records.append({"id": f"near{k}", "text": copy})
        clusters[f"near{k}"] = i
        k += 1
    k = 0
    while k < 40:  # look-alikes: some of an original's speeches, some new ones (Jaccard 0.2-0.5) -> kept
        i = rng.randrange(len(originals))
        parts = originals[i].split("\n\n")
        text = "\n\n".join(parts[:5] + list(rng.sample(speeches, 7)))
        if not 0.2 <= jaccard(shingles(text, SIZE), shingles(originals[i], SIZE)) <= 0.5:
            continue
        records.append({"id": f"alike{k}", "text": text})
        negatives.add(f"alike{k}")
        k += 1
    rng.shuffle(records)
    return records, clusters, negatives


def test_planted_duplicates_recall_precision(tmp_path, speeches, run_prepare) -> None:
    rng = random.Random(7)
    records, clusters, negatives = _planted_corpus(speeches, rng)
    write_jsonl(tmp_path / "corpus.jsonl", records)
    res = run_prepare(f"input={tmp_path / 'corpus.jsonl'}", "prepare=minimal", "tokenizer=char", "keep_text=true")

    # the first document of each cluster (in input order) is the planted original or a copy: which is kept is
    # the order's business; "a duplicate" is any cluster member after the first
    first_seen: dict[int, str] = {}
    truth_dups = set()
    for r in records:
        c = clusters.get(r["id"])
        if c is None:
            continue
        if c in first_seen:
            truth_dups.add(r["id"])
        else:
            first_seen[c] = r["id"]
    removed = {r["id"]: r for r in read_jsonl(res.output / "removed.jsonl")}
    found = {i for i, r in removed.items() if r["stage"] in ("exact_dedup", "near_dedup")}
    recall = len(found & truth_dups) / len(truth_dups)
    precision = len(found & truth_dups) / max(1, len(found))
    assert recall >= 0.95 and precision >= 0.95, (recall, precision)
    assert not negatives & found  # look-alikes at Jaccard ~0.3 are kept
    # an exact copy that comes after its original is caught by the exact stage (normalisation undid the respelling)
    order = {r["id"]: n for n, r in enumerate(records)}
    after = [i for i in clusters if i.startswith("exact") and order[i] > order[f"orig{clusters[i]}"]]
    assert after and all(removed[i]["stage"] == "exact_dedup" for i in after)
    # one representative per cluster, and each removed document names a kept one of its own cluster
    kept = kept_ids(res)
    for c, first in first_seen.items():
        members = [i for i, cc in clusters.items() if cc == c]
        assert sum(m in kept for m in members) == 1
    for i in found:
        assert removed[i]["duplicate_of"] in kept and clusters[removed[i]["duplicate_of"]] == clusters[i]
    stages = {s["stage"]: s for s in res.report["stages"]}
    assert stages["exact_dedup"]["removed"]["exact_duplicate"] >= 1
    assert stages["near_dedup"]["removed"]["near_duplicate"] >= 1

