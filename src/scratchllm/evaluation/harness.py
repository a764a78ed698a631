"""lm-evaluation-harness's model interface over our scoring, registered as ``--model scratchllm``.

lm-eval (0.4) finds a model class only in its own registry, which ``@register_model`` fills when this module is
imported; it has no plugin discovery. ``python -m scratchllm.lm_eval …`` imports this module and then runs lm-eval's
own command line, so ``--model scratchllm --model_args ckpt_path=…`` works with every other lm-eval option.

The three request kinds map onto ``scoring``: ``loglikelihood`` → ``continuation_logprobs`` of ``encode_pair``
(lm-eval's own context/continuation split), ``loglikelihood_rolling`` → ``token_nlls`` with disjoint windows
(lm-eval's rolling policy; the end-of-text id starts the document), ``generate_until`` → greedy decoding with the
request's stop strings. So an lm-eval run and ``python -m scratchllm.evaluate`` give the same numbers on the same
items (a test checks it).

``write_task`` turns one of our multiple-choice tasks (built-in or JSONL) into a local lm-eval task: the items as
JSONL plus a YAML that reads them with ``dataset_path: json``, for ``--include_path`` (run with
``HF_DATASETS_OFFLINE=1``: nothing is downloaded).
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from tqdm import tqdm

from scratchllm.errors import ConfigError
from scratchllm.evaluation.runner import GREEDY
from scratchllm.evaluation.scoring import continuation_logprobs, encode_pair, token_nlls
from scratchllm.evaluation.tasks import ChoiceItem, Task
from scratchllm.generation.fastpath import decode_session
from scratchllm.generation.loading import load_for_generation
from scratchllm.generation.text import TextStream, encode_prompt
from scratchllm.threads import apply_threads

DEFAULT_MAX_GEN_TOKS = 256


@register_model("scratchllm")
class ScratchLLM(LM):
    """``--model_args ckpt_path=…[,device=cpu,dtype=float32,tokenizer=gpt2,threads=auto]``; ``--batch_size N`` rows
    per forward pass."""

    def __init__(
        self,
        ckpt_path: str = "last",
        device: str | None = "auto",
        dtype: str = "float32",
        tokenizer: str | None = None,
        batch_size: int | str | None = 8,
        max_gen_toks: int | str = DEFAULT_MAX_GEN_TOKS,
        threads: int | str | None = "auto",
        **_: Any,  # lm-eval passes options a model may ignore (max_batch_size, …)
    ) -> None:
        super().__init__()
        apply_threads(int(threads) if str(threads).isdigit() else threads)  # as our commands do (scratchllm.threads)
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            # lm-eval's command line passes --device's default (cuda:0) whether or not the user typed it
            warnings.warn(f"device={device} but CUDA is not available here: evaluating on the CPU", stacklevel=2)
            device = "cpu"
        self.model, self.tok = load_for_generation(ckpt_path, device=device or "auto", dtype=dtype,
                                                   tokenizer=tokenizer)
        if self.tok is None:
            raise ValueError(f"{ckpt_path} names no tokenizer; add tokenizer=<gpt2|path> to --model_args")
        self.batch_size = int(batch_size) if str(batch_size or "").isdigit() else 8  # "auto" → our default
        self.max_gen_toks = int(max_gen_toks)

    def loglikelihood(self, requests: list, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        pairs = [encode_pair(self.tok, *request.args) for request in requests]
        out: list[tuple[float, bool]] = []
        step = self.batch_size * 8
        with tqdm(total=len(pairs), desc="loglikelihood", disable=disable_tqdm, file=sys.stderr) as bar:
            for start in range(0, len(pairs), step):
                chunk = continuation_logprobs(self.model, pairs[start : start + step], batch_size=self.batch_size)
                out += [(r.logprob, r.greedy) for r in chunk]
                bar.update(len(chunk))
        return out

    def loglikelihood_rolling(self, requests: list, disable_tqdm: bool = False) -> list[float]:
        context = self.model.config.context_length
        return [-float(token_nlls(self.model, self.tok.encode(request.args[0]), prefix=self.tok.eot_id,
                                  stride=context, batch_size=self.batch_size).double().sum())
                for request in requests]

    def generate_until(self, requests: list, disable_tqdm: bool = False) -> list[str]:
        outputs = []
        with decode_session(self.model):  # a bf16 model's weights are packed once, not per request
            for request in requests:
                prompt, kwargs = request.args
                until = kwargs.get("until") or []
                until = [until] if isinstance(until, str) else list(until)
                max_new = int(kwargs.get("max_gen_toks", self.max_gen_toks))
                ids = encode_prompt(self.tok, prompt)
                outputs.append("".join(TextStream(self.model, self.tok, ids, max_new, stop=until, sampling=GREEDY)))
        return outputs


def write_task(task: Task, folder: str | Path) -> Path:
    """Write ``task`` as a local lm-eval task (``<name>.jsonl`` + ``<name>.yaml`` in ``folder``); returns the YAML.

    The choices are appended with no delimiter (``target_delimiter: ""``), so lm-eval's acc and acc_norm (length
    in characters) are ours. Multiple-choice tasks only: lm-eval's exact match does not strip whitespace as ours does.
    """
    if task.kind != "multiple_choice":
        raise ConfigError(f"task {task.name} is a generation task; only multiple-choice tasks can be written for "
                          "lm-eval")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = (folder / f"{task.name}.jsonl").resolve()
    with open(data, "w", encoding="utf-8") as f:
        for item in task.items:
            assert isinstance(item, ChoiceItem)
            f.write(json.dumps({"context": item.context, "choices": list(item.choices), "gold": item.gold}) + "\n")
    lines = [f"task: {task.name}", "dataset_path: json", "dataset_kwargs:", "  data_files:",
             f"    test: {json.dumps(str(data))}", "test_split: test", "output_type: multiple_choice",
             'doc_to_text: "{{context}}"', 'doc_to_choice: "{{choices}}"', 'doc_to_target: "{{gold}}"',
             'target_delimiter: ""', "metric_list:", "  - metric: acc", "  - metric: acc_norm"]
    lines.append("metadata:\n  version: 1")
    yaml = folder / f"{task.name}.yaml"
    yaml.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return yaml
