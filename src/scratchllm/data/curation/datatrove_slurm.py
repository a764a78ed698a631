"""Slurm for the datatrove executor: submit the jobs as dependent sbatch arrays, or (``dry_run``) only write them.

datatrove's ``SlurmPipelineExecutor`` does the real work either way: it pickles the job (``executor.pik``), lists
its unfinished tasks (``ranks_to_run.json``), writes ``launch_script.slurm`` and hands it to ``sbatch`` with
``--dependency=afterok:<previous job>``. For a dry run we stand in for ``sbatch`` only: each script it would
submit is saved as ``<work>/slurm/NN_<job>.sbatch`` with the arguments it would get, and ``submit.sh`` chains
them with shell variables in place of the job ids, for a person to read, then run.
"""

from __future__ import annotations

import logging
import re
import shlex
from pathlib import Path
from typing import Any, Callable

from scratchllm.data.curation.datatrove_config import DatatroveConfig

log = logging.getLogger(__name__)
_PLACEHOLDER_DEPENDENCY = re.compile(r"^#SBATCH --dependency=(\S*DRYRUN_\d+\S*)[ \t]*\n", flags=re.MULTILINE)


class _DrySbatch:
    """Stands in for datatrove's ``launch_slurm_job``: records the script, returns a placeholder job id."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.lines: list[str] = []
        self.count = 0
        self.current = "job"

    def __call__(self, contents: str, job_id_retriever: Any, *args: str) -> str:
        self.count += 1
        kind = "_merge_stats" if "merge_stats " in contents else ""
        # datatrove writes a merge-stats job's dependency into its script (#SBATCH --dependency=afterok:<id>), so
        # our placeholder id would be submitted as is: move it to the command line, where submit.sh fills it in
        # (sbatch's command-line options win over the script's)
        moved = _PLACEHOLDER_DEPENDENCY.findall(contents)
        contents = _PLACEHOLDER_DEPENDENCY.sub("", contents)
        args = (*args, *(f"--dependency={dep}" for dep in moved))
        name = f"{self.count:02d}_{self.current}{kind}.sbatch"
        (self.folder / name).write_text(contents, encoding="utf-8")
        var = f"JOB_{self.count}"
        shown = " ".join(_quote(a.replace("DRYRUN_", "$JOB_")) for a in args)
        self.lines.append(f'{var}=$(sbatch --parsable {shown} "$HERE/{name}")')
        self.lines.append(f'echo "{self.current}{kind}: job ${var}"')
        return f"DRYRUN_{self.count}"


def _quote(arg: str) -> str:
    """Shell quoting that leaves ``$JOB_n`` expandable."""
    return f'"{arg}"' if "$" in arg else shlex.quote(arg)


def submit(jobs: list[tuple[str, list, int]], dt: DatatroveConfig, work: Path,
           make: Callable[[str, list, int, Any], Any]) -> None:
    import datatrove.executor.slurm as dslurm

    dry = _DrySbatch(work / "slurm") if dt.dry_run else None
    if dry is not None:
        dry.folder.mkdir(parents=True, exist_ok=True)
        real = dslurm.launch_slurm_job
        dslurm.launch_slurm_job = dry
    try:
        previous = None
        for name, pipeline, tasks in jobs:
            ex = make(name, pipeline, tasks, previous)
            if dry is not None:
                dry.current = name
            ex.launch_job()  # after `previous`: its job id is this job's afterok dependency
            previous = ex
    finally:
        if dry is not None:
            dslurm.launch_slurm_job = real
    if dry is None:
        log.info("submitted %d Slurm jobs; logs under %s", len(jobs), work / "logs")
        print(f"submitted {len(jobs)} Slurm jobs (last id {previous.job_id}); each job's tasks log to "
              f"{work / 'logs'}/<job>/logs/; the prepared folder appears when the finalize job ends")
        return
    script = dry.folder / "submit.sh"
    script.write_text("#!/bin/bash\n# Written by `python -m scratchllm.prepare ... executor.kind=slurm "
                      "executor.dry_run=true`: nothing was submitted.\n# Each job waits for the one before it "
                      "(afterok); run this file to submit them all.\nset -euo pipefail\n"
                      'HERE="$(cd "$(dirname "$0")" && pwd)"\n' + "\n".join(dry.lines) + "\n", encoding="utf-8")
    script.chmod(0o755)
    print(f"dry run: wrote {dry.count} Slurm job scripts and {script} (nothing submitted); review them, then: "
          f"bash {script}")
