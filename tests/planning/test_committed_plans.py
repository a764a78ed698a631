"""experiments/plans/ holds the planner's output for 1B on 8×H100 and 10B on 64×H100: it must be what the
planner gives today, made by the command each plan.md records (README's "Scaling up" commands with
``out=experiments/plans/<folder>``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scratchllm.planning import get_accelerator, make_plan, resolve_shape
from scratchllm.planning.render import plan_dict, plan_markdown, torchrun_script
from scratchllm.planning.write import with_command

PLANS = Path(__file__).resolve().parents[2] / "experiments" / "plans"


@pytest.mark.parametrize("params,gpus", [("1b", 8), ("10b", 64)])
def test_committed_plan_is_current(params, gpus):
    plan = make_plan(resolve_shape(params, None, None, 32000), get_accelerator("h100"), gpus)
    folder = PLANS / f"{plan.shape.config.name}-{gpus}xh100"
    command = f"python -m scratchllm.plan params={params} gpus={gpus} gpu=h100 out=experiments/plans/{folder.name}"
    written = json.loads((folder / "plan.json").read_text())
    assert written == {"made_by": command, **json.loads(json.dumps(plan_dict(plan)))}
    assert (folder / "plan.md").read_text().strip() == with_command(plan_markdown(plan), command).strip()
    assert (folder / "launch_torchrun.sh").read_text() == torchrun_script(plan)


@pytest.mark.parametrize("params,gpus", [("1b", 8), ("10b", 64), ("350m", 8)])
def test_plan_command_composes_with_the_training_config(params, gpus, tmp_path):
    """The overrides a plan writes pass the command-line pre-check and compose into the model and trainer it
    planned (the cluster-only `$DATA` / `$RUN_ID` filled in)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from scratchllm.model.config import ModelConfig
    from scratchllm.overrides import check_overrides
    from scratchllm.paths import config_dir
    from scratchllm.planning.render import train_overrides

    plan = make_plan(resolve_shape(params, None, None, 32000), get_accelerator("h100"), gpus)
    args = [a.replace("$DATA", str(tmp_path)).replace("$RUN_ID", "x") for a in train_overrides(plan)]
    check_overrides(str(config_dir()), "train", args)
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[a for a in args if not a.startswith("hydra.")])
    GlobalHydra.instance().clear()
    model = ModelConfig.from_dict(OmegaConf.to_container(cfg.model, resolve=True))
    assert model == plan.shape.config.replace(vocab_size=model.vocab_size)
    assert model.checkpointing == plan.chosen.checkpointing
    assert cfg.trainer.num_nodes == plan.nodes and cfg.trainer.devices == plan.per_node
    assert cfg.data.batch_size * gpus * cfg.trainer.accumulate_grad_batches == plan.global_batch_seqs
