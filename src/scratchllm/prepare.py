"""``python -m scratchllm.prepare input=... output=... [options]``: curate raw text into training shards.

Examples::

    python -m scratchllm.prepare input=corpus/ output=prepared/mine                    # gpt2, web filters
    python -m scratchllm.prepare input='dumps/*.jsonl.gz' output=prepared/web read.text_field=content
    python -m scratchllm.prepare input=plays.parquet output=prepared/plays prepare=books tokenizer=char
    python -m scratchllm.prepare input=corpus/ output=prepared/fr language.keep=[fr] language.backend=lingua
    python -m scratchllm.prepare input='web/*.jsonl' output=prepared/web executor=datatrove executor.tasks=64
    python -m scratchllm.train data=shards data.path=prepared/mine                     # then train on it

Every option is in conf/prepare.yaml (profiles in conf/prepare/); the pipeline is scratchllm.data.curation.
``executor=datatrove`` (conf/executor/) runs the same stages as datatrove jobs: ``datatrove_executor``.

``tokenizer`` is a config group (as in training), so ``tokenizer=char`` picks conf/tokenizer/char.yaml. A trained
tokenizer folder is not a group option, so ``tokenizer=<path>`` is rewritten to ``tokenizer_path=<path>`` before
Hydra sees it: both spellings work.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from scratchllm.cli import precheck_overrides, report_user_errors
from scratchllm.paths import config_dir


def route_tokenizer_path(argv: list[str], conf: Path) -> list[str]:
    """``tokenizer=<x>`` where ``x`` is not an option of the tokenizer config group -> ``tokenizer_path=<x>``."""
    out = []
    for arg in argv:
        if arg.startswith("tokenizer="):
            value = arg.split("=", 1)[1]
            if value and not (conf / "tokenizer" / f"{value}.yaml").is_file():
                arg = f"tokenizer_path={value}"
        out.append(arg)
    return out


def run(cfg: DictConfig) -> dict:
    """Compose-time config -> curated prepared folder; returns the report (also written as report.json)."""
    from scratchllm.data.curation import CurationConfig, curate

    executor = cfg.get("executor") or {"name": "embedded"}
    if executor.get("name") == "datatrove":  # the same stages as datatrove jobs (local, slurm, ray)
        from scratchllm.data.curation.datatrove_config import DatatroveConfig
        from scratchllm.data.curation.datatrove_executor import curate_datatrove

        result = curate_datatrove(CurationConfig.from_mapping(cfg), DatatroveConfig.from_mapping(executor))
        if result is None:  # slurm: submitted (or, dry run, written); the output appears when the jobs end
            return {}
    else:
        result = curate(CurationConfig.from_mapping(cfg))
    r = result.report
    print(f"kept {r['documents_out']:,} of {r['documents_in']:,} documents; "
          f"{r['train_tokens']:,} train / {r['val_tokens']:,} val tokens -> {result.output}")
    print(f"report: {result.output / 'report.md'}")
    print(f"train on it: python -m scratchllm.train data=shards data.path={result.output}")
    return r


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="prepare")
def _main(cfg: DictConfig) -> None:
    with report_user_errors():
        run(cfg)


def main() -> None:
    argv = route_tokenizer_path(sys.argv[1:], config_dir())
    sys.argv[1:] = argv
    precheck_overrides(str(config_dir()), "prepare", argv)
    _main()


if __name__ == "__main__":
    main()
