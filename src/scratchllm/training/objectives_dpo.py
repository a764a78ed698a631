"""``objective=dpo``: Direct Preference Optimization (Rafailov et al. 2023) against a frozen reference model.

For a prompt x with a chosen answer y_w and a rejected one y_l, with log p the summed log-probability of the
answer tokens (the prompt masked, as in SFT), the policy π and the frozen reference π_ref (the starting model):

    r_w = β (log π(y_w|x) − log π_ref(y_w|x)),   r_l = β (log π(y_l|x) − log π_ref(y_l|x))
    loss = −log σ(r_w − r_l)

``r_w``, ``r_l`` are the implicit rewards; we log their means, the margin ``r_w − r_l`` and the accuracy (the
share of pairs with ``r_w > r_l``, strictly). At the start the policy is the reference: loss log 2, margin 0
(and accuracy 0, every pair a tie; it rises as the policy separates the answers).

The batch (``finetune.preference``) holds the chosen rows first and the rejected rows after them, ``pairs`` rows
each, so one forward pass of each model scores both. The LightningModule gives the objective its reference
(``reference``: a frozen copy of the starting model, saved in the checkpoint so a resumed run keeps it).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from scratchllm.model.gpt import IGNORE_INDEX
from scratchllm.training.objectives import ObjectiveOutput


def sequence_logps(model: nn.Module, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed log-probability of each row's labelled tokens (labels -100 are left out)."""
    logits, _ = model(input_ids)
    logps = F.log_softmax(logits.float(), dim=-1)
    keep = labels != IGNORE_INDEX
    picked = logps.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * keep).sum(-1)


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The mean DPO loss over pairs and the reward metrics (module docstring: the formula)."""
    chosen = beta * (policy_chosen - ref_chosen)
    rejected = beta * (policy_rejected - ref_rejected)
    margin = chosen - rejected
    loss = -F.logsigmoid(margin).mean()
    metrics = {"reward_chosen": chosen.mean(), "reward_rejected": rejected.mean(), "reward_margin": margin.mean(),
               "reward_accuracy": (margin > 0).float().mean()}
    return loss, {k: v.detach() for k, v in metrics.items()}


class DirectPreference:
    name = "dpo"
    reports_perplexity = False
    needs_reference = True

    def __init__(self, beta: float = 0.1) -> None:
        self.beta = float(beta)
        self.reference: nn.Module | None = None  # set by the LightningModule

    def __call__(self, model: nn.Module, batch: Mapping[str, Any]) -> ObjectiveOutput:
        assert self.reference is not None, "DPO needs its reference model (the LightningModule sets it)"
        ids, labels, pairs = batch["input_ids"], batch["labels"], int(batch["pairs"])
        policy = sequence_logps(model, ids, labels)
        self.reference.eval()  # Lightning puts the whole module in train mode: no dropout in the reference
        with torch.no_grad():
            ref = sequence_logps(self.reference, ids, labels)
        loss, metrics = dpo_loss(policy[:pairs], policy[pairs:], ref[:pairs], ref[pairs:], self.beta)
        return ObjectiveOutput(loss=loss, weight=torch.tensor(pairs, device=ids.device), metrics=metrics)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "beta": self.beta}
