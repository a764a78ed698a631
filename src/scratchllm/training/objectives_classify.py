"""``objective=classify``: a linear head on the hidden state of each text's last non-padding token.

A causal model's last real position has read the whole text, so its final hidden state (after ``norm_f``) is the
text's summary; the head maps it to one logit per label (``labels``, filled in by the run from the data).
``trainable`` picks what learns: ``head`` only, the last ``last_blocks`` blocks (+ final norm) and the head,
``all``, or ``adapter`` (LoRA layers from ``adapter=lora`` and the head). Loss: cross-entropy; metric: accuracy.

The head lives on the model as ``model.classifier`` (so the optimizer, checkpoints and devices see it like any
other parameter); the hidden states are read with a forward hook on ``norm_f``, so the GPT itself is unchanged.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from scratchllm.errors import ConfigError
from scratchllm.training.objectives import ObjectiveOutput

TRAINABLE = ("head", "last_blocks", "all", "adapter")


def last_hidden(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, n_embd): the final-norm hidden state at each row's last non-padding position."""
    seen: list[torch.Tensor] = []
    hook = model.norm_f.register_forward_hook(lambda module, args, out: seen.append(out))
    try:
        model(input_ids)
    finally:
        hook.remove()
    last = attention_mask.sum(dim=1) - 1
    return seen[0][torch.arange(input_ids.shape[0], device=input_ids.device), last]


class Classify:
    name = "classify"
    reports_perplexity = False

    def __init__(self, labels: Sequence[str] | None = None, trainable: str = "head", last_blocks: int = 1) -> None:
        if trainable not in TRAINABLE:
            raise ConfigError(f"objective.trainable={trainable!r} is not known; choose one of {', '.join(TRAINABLE)}")
        self.labels = list(labels or [])
        self.trainable, self.last_blocks = trainable, int(last_blocks)

    def attach(self, model: nn.Module) -> None:
        """Add the head to ``model`` and set which parameters train (called once the model is built)."""
        if len(self.labels) < 2:
            raise ConfigError("objective=classify needs its labels (the run fills them in from data=classify_*)")
        cfg = model.config
        head = nn.Linear(cfg.n_embd, len(self.labels))
        nn.init.normal_(head.weight, std=cfg.init_std)
        nn.init.zeros_(head.bias)
        adapters = [n for n, p in model.named_parameters() if ".lora_" in n]
        if self.trainable == "adapter" and not adapters:
            raise ConfigError("objective.trainable=adapter needs a LoRA adapter: add adapter=lora")
        if self.trainable != "adapter":
            model.requires_grad_(self.trainable == "all")
        if self.trainable == "last_blocks":
            if not 1 <= self.last_blocks <= cfg.n_layer:
                raise ConfigError(f"objective.last_blocks must be 1..{cfg.n_layer}, got {self.last_blocks}")
            for block in model.blocks[-self.last_blocks:]:
                block.requires_grad_(True)
            model.norm_f.requires_grad_(True)
        model.classifier = head  # registered last: trainable whatever the mode

    def __call__(self, model: nn.Module, batch: Mapping[str, Any]) -> ObjectiveOutput:
        hidden = last_hidden(model, batch["input_ids"], batch["attention_mask"])
        logits = model.classifier(hidden).float()
        labels = batch["labels"]
        loss = F.cross_entropy(logits, labels)
        accuracy = (logits.argmax(-1) == labels).float().mean()
        return ObjectiveOutput(loss=loss, weight=torch.tensor(labels.numel(), device=labels.device),
                               metrics={"accuracy": accuracy.detach()})

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "labels": self.labels, "trainable": self.trainable}
