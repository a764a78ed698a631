"""Shared helpers for the curation tests: compose the real conf/prepare.yaml, write small input files."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Callable, Iterable

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from scratchllm.data.curation import CurationConfig, curate
from scratchllm.data.curation import synthetic as syn
from scratchllm.data.curation.pipeline import CurationResult
from scratchllm.paths import config_dir

QUIET = ["progress=false", "workers=1"]


def prepare_config(*overrides: str) -> CurationConfig:
    """``CurationConfig`` exactly as ``python -m scratchllm.prepare <overrides>`` would build it."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(config_dir()), version_base="1.3"):
            cfg = compose("prepare", overrides=[*QUIET, *overrides])
    finally:
        GlobalHydra.instance().clear()
    return CurationConfig.from_mapping(cfg)


def write_jsonl(path: Path, records: Iterable[dict[str, Any] | str]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n")
    return path


def mixed_corpus(path: Path, *, awkward: bool = False) -> Path:
    """A JSONL corpus with a bit of everything: prose, exact and near copies, French, keyword spam, a number table
    and a broken line. ``awkward`` adds two documents that are empty after normalising and drops the id of six
    (they get path:line ids: line counting across a piece's boundaries)."""
    rng = random.Random(2)
    speeches = syn.shakespeare_speeches()
    docs = [syn.collage(rng, speeches, 12) for _ in range(40)]
    records = [{"id": f"p{i}", "text": t} for i, t in enumerate(docs)]
    records += [{"id": f"x{i}", "text": syn.respell(docs[i], rng)} for i in range(4)]
    records += [{"id": f"n{i}", "text": syn.perturb(docs[10 + i], rng, 0.01)} for i in range(4)]
    records += [{"id": f"fr{i}", "text": syn.language_document("fr", rng)} for i in range(3)]
    records += [{"id": "spam", "text": syn.keyword_spam(rng)}, {"id": "table", "text": syn.number_table(rng)}]
    if awkward:
        records += [{"id": f"noid{i}", "text": ""} for i in range(2)]
    rng.shuffle(records)
    if awkward:
        for r in records[:6]:
            del r["id"]
    return write_jsonl(path, records + ["{broken"])


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def kept_ids(result: CurationResult) -> set[str]:
    """Ids of the documents that reached the shards (from curated.jsonl: run with keep_text=true)."""
    return {r["id"] for r in read_jsonl(result.output / "curated.jsonl")}


@pytest.fixture
def run_prepare(tmp_path: Path) -> Callable[..., CurationResult]:
    def _run(*overrides: str, output: str = "out") -> CurationResult:
        return curate(prepare_config(f"output={tmp_path / output}", *overrides))

    return _run
