"""Fine-tuning objectives under DDP (``trainer=ddp_sim``: 2 CPU processes, ddp_spawn): each recipe runs from a
checkpoint, its data split by rank (the batches are an iterable stream, so Lightning does not try to put its own
sampler into ours), and the checkpoint carries the data position."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.finetune.test_sft import run


@pytest.mark.slow
@pytest.mark.parametrize("recipe", [["experiment=sft_plays"], ["experiment=dpo_plays"],
                                    ["experiment=classify_plays", "objective.trainable=adapter", "adapter=lora"]],
                         ids=["sft", "dpo", "classify_lora"])
def test_fine_tuning_under_ddp_sim(recipe: list[str], start_ckpt: Path, tmp_path: Path) -> None:
    out = run("-m", "scratchllm.train", *recipe, "trainer=ddp_sim", f"init_from={start_ckpt}", "threads=1",
              "trainer.max_steps=2", "trainer.val_check_interval=2", "data.batch_size=4", "data.max_val_windows=8",
              "data.builtin.per_play=2", "data.builtin.val_per_play=2",
              f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-3000:])
    assert (tmp_path / "run" / "result.json").is_file()
    # the step from the checkpoint: under ddp_spawn result.json estimates it from a token count (see the report)
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2
    data_state = next(v for k, v in ckpt.items() if k.endswith("DataModule"))
    assert data_state == {"batches_served": 2}  # per rank: each of the 2 ranks took 2 of the batches
