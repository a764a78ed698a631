"""quantize_quality's one-token-at-a-time scoring: the path generate takes, which int8's decode kernels serve."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "experiments"))

import quantize_quality  # noqa: E402
from scratchllm.model import GPT, ModelConfig  # noqa: E402
from scratchllm.quantization import QuantConfig, quantize_model  # noqa: E402
from scratchllm.quantization.native import status  # noqa: E402


@pytest.fixture(scope="module")
def model_and_ids() -> tuple[GPT, torch.Tensor]:
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=65, context_length=32, n_layer=2, n_head=4, n_embd=64)).eval()
    return model, torch.randint(0, 65, (400,))


def test_decode_scores_the_same_windows_as_the_batched_pass(model_and_ids):
    model, ids = model_and_ids
    nll, n = quantize_quality.decode_nll(model, ids, 32, 100)
    assert n == 96  # whole windows only: 3 of 32
    assert nll == pytest.approx(quantize_quality.mean_nll(model, ids[: n + 1], 32), abs=1e-5)


def test_int8_one_token_at_a_time_takes_the_kernel_and_stays_near_the_reference(model_and_ids, monkeypatch):
    model, ids = model_and_ids
    q = copy.deepcopy(model)
    quantize_model(q, QuantConfig("int8"))
    calls = []
    import scratchllm.quantization.int8 as int8

    real = int8.int8_matvec
    monkeypatch.setattr(int8, "int8_matvec", lambda: calls.append(1) or real())
    reference = quantize_quality.mean_nll(q, ids[:65], 32)  # batched: the dequantise-then-matmul reference
    assert not calls
    ours, _ = quantize_quality.decode_nll(q, ids, 32, 64)
    assert calls  # one-row inputs asked for the decode kernel
    patched = int8.int8_matvec
    with quantize_quality.torch_int8_kernel():
        theirs, _ = quantize_quality.decode_nll(q, ids, 32, 64)
    assert int8.int8_matvec is patched  # put back after the block
    assert theirs == pytest.approx(reference, abs=1e-5)  # torch's kernel: fp32 activations, exact up to float
    tolerance = 1e-3 if status()[0] is not None else 1e-5  # ours rounds activations to 15-bit integers per row
    assert ours == pytest.approx(reference, abs=tolerance)


def test_decode_needs_one_whole_window(model_and_ids):
    model, ids = model_and_ids
    with pytest.raises(SystemExit, match="at least one window of 32"):
        quantize_quality.decode_nll(model, ids, 32, 31)
