"""The training forward traces into one graph under torch.compile (no graph breaks to re-enter Python per step)."""

from __future__ import annotations

import pytest
import torch

from scratchllm.model import GPT, load_preset


@pytest.mark.parametrize("overrides", [{}, {"position": "rope", "norm": "rmsnorm", "mlp": "swiglu", "n_kv_head": 2}])
def test_forward_with_loss_has_no_graph_breaks(overrides: dict) -> None:
    import torch._dynamo

    torch._dynamo.reset()
    model = GPT(load_preset("nano", vocab_size=70, **overrides))
    x = torch.randint(0, 70, (2, 16))
    explanation = torch._dynamo.explain(model)(x, x)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1
