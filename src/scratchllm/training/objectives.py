"""Objectives: what a batch means and what loss it gives. ``objective=<name>`` picks one (conf/objective/).

An objective is a small callable ``objective(model, batch) -> ObjectiveOutput``. The batch is a dict — always
``input_ids`` and ``labels``, plus whatever its data provides (``attention_mask``, a chosen/rejected pair, a class
label) — so the LightningModule knows no particular objective: it logs ``loss`` and every named metric, and
averages validation values weighted by ``weight`` (tokens for a language-model loss, examples for a classifier),
which keeps them exact across batches of different sizes and across DDP ranks.

Adding an objective is one class here (or in a file of its own) and one yaml in conf/objective/.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import nn

from scratchllm.model.gpt import IGNORE_INDEX


@dataclass
class ObjectiveOutput:
    loss: torch.Tensor  # the scalar to minimise (a mean over ``weight`` items)
    weight: torch.Tensor  # how many items (tokens, examples) the mean is over
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)  # more means over the same items


class NextTokenLM:
    """``objective=lm``: next-token cross-entropy over every position whose label is not ``IGNORE_INDEX`` (-100).

    Pretraining windows label every position; a prompt-masked fine-tuning batch sets the prompt's labels to -100,
    which is all "loss only on the answer" takes. Validation also reports perplexity, exp(mean token NLL)."""

    name = "lm"
    reports_perplexity = True

    def __call__(self, model: nn.Module, batch: Mapping[str, Any]) -> ObjectiveOutput:
        labels = batch["labels"]
        _, loss = model(batch["input_ids"], labels)
        return ObjectiveOutput(loss=loss, weight=(labels != IGNORE_INDEX).sum())

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name}
