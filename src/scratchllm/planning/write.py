"""Write a plan's files: plan.md, plan.json, launch_torchrun.sh, launch_slurm.sbatch."""

from __future__ import annotations

import json
from pathlib import Path

from scratchllm.errors import ConfigError
from scratchllm.planning.recipe import Plan, what_would_fit
from scratchllm.planning.render import plan_dict, plan_markdown, slurm_script, torchrun_script


def with_command(markdown: str, command: str | None) -> str:
    """The plan's Markdown with the command that made it under the title (so a plan found in a folder can be
    remade, or remade with one value changed)."""
    if not command:
        return markdown
    title, _, rest = markdown.partition("\n")
    return f"{title}\n\nMade by `{command}`.\n{rest}"


def write_plan(plan: Plan, out: Path, *, strict: bool = True, command: str | None = None) -> str:
    """Write the plan's files into ``out`` and return its Markdown (``command``: the command line that asked for
    it, recorded in plan.md and plan.json). A plan that fits no configuration is still written (its Markdown says
    what would fit), then refused as a one-line error when ``strict``."""
    out.mkdir(parents=True, exist_ok=True)
    text = with_command(plan_markdown(plan), command)
    (out / "plan.md").write_text(text + "\n", encoding="utf-8")
    data = plan_dict(plan) if not command else {"made_by": command, **plan_dict(plan)}
    (out / "plan.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    if plan.chosen is None:
        if strict:
            raise ConfigError(f"{plan.shape.config.name} does not fit {plan.devices} × {plan.accelerator.name}: "
                              f"{what_would_fit(plan)}")
        return text
    for name, body in (("launch_torchrun.sh", torchrun_script(plan)), ("launch_slurm.sbatch", slurm_script(plan))):
        (out / name).write_text(body, encoding="utf-8")
        (out / name).chmod(0o755)
    return text
