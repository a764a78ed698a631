"""Options of the datatrove executor (``executor=datatrove``), and how the input is cut into tasks.

The stage settings (read, normalize, dedup, language, quality) are the embedded pipeline's ``CurationConfig``:
both executors share them. What is datatrove's own lives here: where tasks run (``kind``), how many (``tasks``),
how many at once (``workers``), the Slurm / Ray resources, and the work folder that holds the intermediate files
and datatrove's completion markers (which make a restarted run skip the tasks that finished).

MinHash parameters. The embedded stage finds candidate pairs with LSH (``bands`` bands of ``num_perm / bands``
rows) and then *verifies* each candidate: a duplicate is an estimated Jaccard >= ``threshold``. datatrove's
bucket stage alone does not verify (two documents are duplicates when any whole bucket of their signatures
agrees, so the bucket shape itself would be the threshold: a soft S-curve through ~``(1/buckets)**(1/rows)``).
We map our settings one to one: buckets = ``near_dedup.bands``, hashes per bucket = ``num_perm / bands``,
shingles = our ``shingle_size``-word shingles, and the cluster stage verifies every candidate pair against
``near_dedup.threshold`` with the documents' full signatures (saved by the signature stage, read back row by
row), so both executors apply the same rule. ``executor.buckets`` / ``executor.hashes_per_bucket``
override the shape.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from scratchllm.data.curation.config import NearDedupConfig, _plain
from scratchllm.errors import ConfigError
from scratchllm.textio import SNIFF_BYTES, binary_reason

KINDS = ("local", "slurm", "ray")
MAX_TASKS = 65_000  # exact dedup ranks tasks by a 16-bit priority (earlier task wins)


@dataclass
class SlurmOptions:
    partition: str = "cpu"
    time: str = "04:00:00"
    cpus_per_task: int = 1
    mem_per_cpu_gb: int = 2
    job_name: str = "scratchllm-prepare"
    env_command: str | None = None  # e.g. "source /shared/venv/bin/activate"; null = the running interpreter's venv
    sbatch_args: dict[str, Any] = field(default_factory=dict)
    qos: str | None = None


@dataclass
class RayOptions:
    cpus_per_task: int = 1
    mem_per_cpu_gb: float = 2.0


@dataclass
class DatatroveConfig:
    name: str = "datatrove"
    kind: str = "local"  # local | slurm | ray
    tasks: int = 4  # tasks per sharded stage (the input is cut into this many pieces of about equal bytes)
    workers: int | None = None  # tasks run at once; null = all (local: processes, slurm: array throttle)
    dry_run: bool = False  # slurm: write the job scripts and submit.sh, submit nothing
    work_dir: str | None = None  # intermediate files + datatrove logs; null = <output>.datatrove-work
    keep_work: bool = False  # keep the work folder after a successful local run
    buckets: int | None = None  # MinHash buckets; null = derived from near_dedup (module docstring)
    hashes_per_bucket: int | None = None
    slurm: SlurmOptions = field(default_factory=SlurmOptions)
    ray: RayOptions = field(default_factory=RayOptions)

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any]) -> "DatatroveConfig":
        data = dict(_plain(cfg) or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(k for k in data if k not in names)
        if unknown:
            raise ConfigError(f"unknown option(s) {['executor.' + k for k in unknown]}; known: "
                              f"{sorted('executor.' + n for n in names)}")
        for key, sub in (("slurm", SlurmOptions), ("ray", RayOptions)):
            value = data.get(key) or {}
            sub_names = {f.name for f in dataclasses.fields(sub)}
            bad = sorted(k for k in value if k not in sub_names)
            if bad:
                raise ConfigError(f"unknown option(s) {[f'executor.{key}.{k}' for k in bad]}; known: "
                                  f"{sorted(f'executor.{key}.{n}' for n in sub_names)}")
            data[key] = sub(**value)
        out = cls(**data)
        if out.kind not in KINDS:
            raise ConfigError(f"executor.kind={out.kind!r} is not one of {list(KINDS)}")
        if not 1 <= int(out.tasks) <= MAX_TASKS:
            raise ConfigError(f"executor.tasks={out.tasks} must be between 1 and {MAX_TASKS}")
        if out.workers is not None and int(out.workers) < 1:
            raise ConfigError(f"executor.workers={out.workers} must be at least 1 (or null for all tasks at once)")
        if out.dry_run and out.kind != "slurm":
            raise ConfigError("executor.dry_run=true only applies to executor.kind=slurm (it writes the job scripts)")
        return out


def minhash_shape(near: NearDedupConfig, dt: DatatroveConfig) -> tuple[int, int]:
    """``(buckets, hashes_per_bucket)`` for datatrove's MinHash stages (see the module docstring)."""
    buckets = int(dt.buckets or near.bands)
    return buckets, int(dt.hashes_per_bucket or max(1, int(near.num_perm) // buckets))


# ------------------------------------------------------------------------------------------- input plan
Piece = tuple[str, int | None, int | None]  # (path, first byte, end byte) of a JSONL file, or (path, None, None)


def _splittable(path: Path, encoding: str) -> bool:
    """Plain JSONL text can be cut at any byte (a line belongs to the piece its first byte is in); compressed,
    JSON, Parquet and text files are read whole by one task."""
    if not path.name.lower().endswith((".jsonl", ".ndjson")):
        return False
    with open(path, "rb") as f:
        head = f.read(SNIFF_BYTES)
    return binary_reason(head, encoding, hint="read.encoding") is None


def plan_pieces(inputs: list[Path], tasks: int, encoding: str = "utf-8") -> list[list[Piece]]:
    """Each task's pieces of the input, contiguous and in input order (task 0 reads the start), of about equal
    bytes. Contiguity is what makes "the first copy is kept" mean the same as in the embedded executor."""
    sizes = [p.stat().st_size for p in inputs]
    total = max(1, sum(sizes))
    bounds = [total * k // tasks for k in range(tasks)] + [total]
    plan: list[list[Piece]] = [[] for _ in range(tasks)]
    offset = 0
    for path, size in zip(inputs, sizes):
        if size and _splittable(path, encoding):
            for k in range(tasks):
                a, b = max(offset, bounds[k]), min(offset + size, bounds[k + 1])
                if a < b:
                    plan[k].append((str(path), a - offset, b - offset))
        else:
            k = next(i for i in range(tasks) if offset < bounds[i + 1] or i == tasks - 1)
            plan[k].append((str(path), None, None))
        offset += size
    return plan
