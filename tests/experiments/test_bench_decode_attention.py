"""The decode-attention and AdamW benchmarks: their rows, their switch back to bf16 attention, their optimizer kinds."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "experiments"))

import bench_adamw  # noqa: E402
import bench_decode_attention  # noqa: E402
import scratchllm.model.attention as attention  # noqa: E402


def test_attention_rows_time_every_way_against_bf16_sdpa():
    rows = bench_decode_attention.attention_rows([16], rounds=1, calls=2)
    assert [r[1] for r in rows] == ["SDPA, bf16 (torch as is)", "SDPA, cast to float32 (ours)", "SDPA, float32 cache",
                                    "explicit, bf16", "explicit, cast to float32 (ours)"]
    assert rows[0][3] == "1.00×" and all(float(r[2]) > 0 for r in rows)


def test_bf16_attention_switch_is_put_back():
    q = torch.zeros(1, 2, 1, 4, dtype=torch.bfloat16)
    assert attention.decode_in_float32(q)
    with bench_decode_attention.bf16_attention():
        assert not attention.decode_in_float32(q)
    assert attention.decode_in_float32(q)
    assert not attention.decode_in_float32(q.float()) and not attention.decode_in_float32(q.expand(1, 2, 3, 4))


def test_adamw_kinds_build_the_optimizer_they_name_and_step():
    for kind in ("foreach", "fused"):
        step, optimizer, n = bench_adamw.make_step(kind, "nano")
        assert n > 0 and bool(optimizer.defaults["fused"]) == (kind == "fused")
        assert bool(optimizer.defaults["foreach"]) == (kind == "foreach")
        param = optimizer.param_groups[0]["params"][0]
        before = param.detach().clone()
        step()
        assert not torch.equal(param, before)  # one clipped step moved the weights
