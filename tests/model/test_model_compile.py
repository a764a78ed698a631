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


def test_gelu_written_for_inductor_equals_gpt2_gelu() -> None:
    """Under compile the MLP's GELU is the sigmoid form of GPT-2's tanh approximation: the same function, values
    and gradients (so imported GPT-2 weights keep matching and compiled training follows eager training)."""
    import torch.nn.functional as F

    from scratchllm.model.layers import gelu_tanh_as_sigmoid

    x = torch.linspace(-12, 12, 20001, dtype=torch.float64, requires_grad=True)
    ours = gelu_tanh_as_sigmoid(x)
    ref = F.gelu(x, approximate="tanh")
    torch.testing.assert_close(ours, ref, atol=1e-12, rtol=1e-12)
    (g_ours,) = torch.autograd.grad(ours.sum(), x)
    (g_ref,) = torch.autograd.grad(ref.sum(), x)
    torch.testing.assert_close(g_ours, g_ref, atol=1e-12, rtol=1e-12)


def test_compiled_training_step_matches_eager() -> None:
    """One compiled forward + backward of a GELU model (explicit attention, the fast CPU path) gives eager's loss
    and gradients."""
    import torch._dynamo

    torch._dynamo.reset()
    torch.manual_seed(0)
    eager = GPT(load_preset("nano", vocab_size=70, n_layer=2, attention="explicit"))
    compiled = GPT(load_preset("nano", vocab_size=70, n_layer=2, attention="explicit"))
    compiled.load_state_dict(eager.state_dict())
    compiled.compile()
    x = torch.randint(0, 70, (2, 16))
    y = torch.randint(0, 70, (2, 16))
    _, loss_e = eager(x, y)
    _, loss_c = compiled(x, y)
    loss_e.backward()
    loss_c.backward()
    torch.testing.assert_close(loss_c, loss_e, atol=1e-5, rtol=1e-5)
    for (name, pe), (_, pc) in zip(eager.named_parameters(), compiled.named_parameters()):
        torch.testing.assert_close(pc.grad, pe.grad, atol=1e-5, rtol=1e-4, msg=name)
