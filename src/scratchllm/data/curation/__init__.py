"""Data curation: raw text in many formats -> clean, deduplicated, filtered token shards, with an audit trail.

    from scratchllm.data.curation import CurationConfig, curate
    result = curate(CurationConfig(input=["corpus/*.jsonl"], output="prepared/my_corpus", tokenizer="gpt2"))
    print(result.report["documents_out"], result.prepared.train_tokens)

The stages, in order (one module each): ``readers`` (files, folders, globs, JSONL/JSON/Parquet, Hugging Face),
``normalize`` (Unicode, control characters, whitespace), ``dedup`` (exact hash, then MinHash LSH),
``language`` (fastText or lingua), ``quality`` (Gopher/C4 heuristics), then tokenisation into the same
prepared-folder layout as ``prepare_corpus`` (``pipeline``). ``report`` writes report.json / report.md;
``synthetic`` builds corpora with known answers for tests and benchmarks. The command line is
``python -m scratchllm.prepare``.
"""

from scratchllm.data.curation.config import (CurationConfig, ExactDedupConfig, LanguageConfig, NearDedupConfig,
                                             NormalizeConfig, QualityConfig, ReadConfig)
from scratchllm.data.curation.documents import Document, Removal
from scratchllm.data.curation.pipeline import CURATED_FILE, REMOVED_FILE, CurationResult, assign_split, curate

__all__ = [
    "CURATED_FILE",
    "REMOVED_FILE",
    "CurationConfig",
    "CurationResult",
    "Document",
    "ExactDedupConfig",
    "LanguageConfig",
    "NearDedupConfig",
    "NormalizeConfig",
    "QualityConfig",
    "ReadConfig",
    "Removal",
    "assign_split",
    "curate",
]
