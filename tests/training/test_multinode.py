"""Two "nodes" on this machine: two torchrun launches (`--nnodes=2 --nproc-per-node=1`, c10d rendezvous on
127.0.0.1), the shape of the plan's launch_torchrun.sh, train DDP over gloo exactly like 2 processes on one node."""

from __future__ import annotations

import pytest

from tests.training.distributed_runs import finish, free_port, result, torchrun, val_curve

pytestmark = pytest.mark.slow


def test_two_node_torchrun_equals_one_node_two_processes(tmp_path, data_cache):
    cache = f"paths.cache_dir={data_cache}"
    ddp = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=1", "trainer.num_nodes=2", cache]
    port = free_port()
    two_nodes = tmp_path / "two_nodes"
    # both "nodes" write to one run folder, as on a cluster with a shared filesystem
    nodes = [torchrun(tmp_path, two_nodes, *ddp, nnodes=2, nproc=1, port=port, node_rank=r) for r in (0, 1)]
    for node in nodes:
        finish(node)

    one_node = tmp_path / "one_node"
    finish(torchrun(tmp_path, one_node, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", cache))
    r = result(two_nodes)
    assert r["global_step"] == 4 and r["tokens_seen"] == 2 * 4 * 8 * 32  # 2 ranks × 4 steps × batch 8 × 32
    assert val_curve(two_nodes) == pytest.approx(val_curve(one_node), abs=2e-4)  # the curve keeps 4 decimals
