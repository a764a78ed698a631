"""What ``python -m scratchllm.evaluate`` does once Hydra has composed its config: check the options, load the
model once (``generation.loading``: a training checkpoint or a Hugging Face folder, verified), gather the texts and
tasks, score them, write ``results.json`` / ``results.md``, print the tables, and log to TensorBoard when given a
training run folder.

Texts: ``shakespeare_val`` (the default corpus's held-out plays, rendered as training renders them) or any file,
folder (its ``.txt`` and ``.md`` files) or glob; each file is one document. Tasks: a built-in name
(``builtin.BUILTIN``) or a ``.jsonl`` file (``tasks.py`` has the schema).
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from scratchllm.errors import ConfigError
from scratchllm.generation.loading import LoadOptions
from scratchllm.evaluation.tasks import Task, load_jsonl_task
from scratchllm.textio import SNIFF_BYTES, BinarySkips, binary_reason, decode_counting, expand_paths

TEXT_SUFFIXES = (".txt", ".md")
NAMED_TEXTS = ("shakespeare_val",)


@dataclass
class EvaluateOptions(LoadOptions):
    """The fields of conf/evaluate.yaml (see there for what each one does); the loading ones are ``LoadOptions``'."""

    tasks: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    limit: int | None = None
    seed: int = 0
    stride: int | None = None
    batch_size: int = 8
    out_dir: str | None = None
    run_dir: str | None = None

    def __post_init__(self) -> None:
        self.tasks = [self.tasks] if isinstance(self.tasks, str) else list(self.tasks or [])
        self.texts = [self.texts] if isinstance(self.texts, str) else list(self.texts or [])
        if not self.tasks and not self.texts:
            raise ConfigError("nothing to evaluate; add tasks=[shakespeare_next_line] and/or texts=[<file, folder, "
                              "glob or shakespeare_val>]")
        for name, value in (("limit", self.limit), ("batch_size", self.batch_size), ("stride", self.stride)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")
        if self.run_dir is not None and not Path(self.run_dir).is_dir():
            raise ConfigError(f"run_dir={self.run_dir} is not a folder; pass a training run folder "
                              "(logs/train/runs/<time>) or leave it null")
        super().__post_init__()


def load_texts(spec: str) -> list[str]:
    """The documents a ``texts`` entry names (module doc)."""
    if spec == "shakespeare_val":
        from scratchllm.data.corpora.shakespeare import ShakespearePlays

        return ShakespearePlays().splits()["val"]
    files = expand_paths(spec, accept=lambda p: p.suffix in TEXT_SUFFIXES, kinds=".txt/.md", hint="texts")
    binary = BinarySkips(option="texts", fix="pass text files (.txt, .md)")
    docs = []
    for f in files:
        raw = f.read_bytes()
        reason = binary_reason(raw[:SNIFF_BYTES], "utf-8", hint="texts")
        if reason:
            binary.add(f, reason)
            continue
        binary.text()
        docs.append(decode_counting(raw, "utf-8", hint="texts")[0])
    binary.check()
    return docs


def load_task(spec: str, limit: int | None, seed: int) -> Task:
    """The task a ``tasks`` entry names: a built-in one, or a .jsonl file (its first ``limit`` items)."""
    from scratchllm.evaluation.builtin import BUILTIN, builtin_task

    if spec in BUILTIN:
        return builtin_task(spec, limit, seed)
    if not spec.endswith(".jsonl"):
        raise ConfigError(f"unknown task {spec!r}; choose a built-in one ({', '.join(BUILTIN)}) or a .jsonl file")
    task = load_jsonl_task(spec)
    task.items = task.items[:limit] if limit is not None else task.items
    return task


def checkpoint_step(path: Path) -> int:
    """The training step a checkpoint was saved at (0 for a Hugging Face folder): the TensorBoard x-axis."""
    from scratchllm import checkpoint

    if path.is_dir():
        return 0
    return int(checkpoint.load(path, verify=False, mmap=True).get("global_step", 0))


def evaluate(model: Any, tokenizer: Any, options: EvaluateOptions) -> dict[str, Any]:
    """Score ``options``' texts and tasks with a loaded model; the results as ``results.json`` holds them."""
    from scratchllm.evaluation.runner import core_score, run_task, run_texts
    from scratchllm.evaluation.scoring import check_stride
    from scratchllm.quantization.model import weight_format

    context = model.config.context_length
    stride = check_stride(options.stride, context)
    texts = {spec: load_texts(spec) for spec in options.texts}
    tasks = [load_task(spec, options.limit, options.seed) for spec in options.tasks]  # every input before scoring
    results: dict[str, Any] = {
        "ckpt_path": str(options.ckpt_path), "model": model.config.name, "tokenizer": tokenizer.name,
        "weights": weight_format(model),  # int8 / int4 when quantized (a file, or quantize= on load)
        "context_length": context, "stride": stride, "seed": options.seed,
        "texts": run_texts(model, tokenizer, texts, stride=options.stride, batch_size=options.batch_size),
        "tasks": {t.name: run_task(model, tokenizer, t, batch_size=options.batch_size) for t in tasks},
    }
    results["core"] = core_score(results["tasks"])
    return results


def run_session(options: EvaluateOptions, stdout: TextIO | None = None, stderr: TextIO | None = None
                ) -> dict[str, Any]:
    """Load, evaluate, write and print (module doc)."""
    from scratchllm.evaluation.report import log_tensorboard, markdown, write_results
    from scratchllm.generation.loading import resolve_checkpoint
    from scratchllm.threads import apply_threads

    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    apply_threads(options.threads)
    where = resolve_checkpoint(options.ckpt_path, options.log_dir)
    model, tokenizer = options.load(where)
    if tokenizer is None:
        raise ConfigError(f"{where} names no tokenizer and evaluation reads text; pass tokenizer=<gpt2|char|bpe|"
                          "cl100k> or tokenizer.path=<tokenizer.json, folder or training .ckpt>")
    print(f"evaluating {where} ({model.config.name}, tokenizer {tokenizer.name})", file=stderr, flush=True)
    results = evaluate(model, tokenizer, dataclasses.replace(options, ckpt_path=str(where)))
    if options.out_dir:
        json_path, _ = write_results(results, options.out_dir)
        print(f"results: {json_path} (and results.md)", file=stderr, flush=True)
    if options.run_dir:
        folder = log_tensorboard(results, options.run_dir, checkpoint_step(where))
        print(f"TensorBoard: {folder} (tags eval/…)", file=stderr, flush=True)
    stdout.write(markdown(results) + "\n")
    stdout.flush()
    return results
