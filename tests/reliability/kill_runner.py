"""``python -m scratchllm.train`` that kill -9s itself at a chosen moment, without touching product code.

    python tests/reliability/kill_runner.py step:6 -- <train overrides>   # as optimizer step 7 starts
    python tests/reliability/kill_runner.py save:2 -- <train overrides>   # half-way through writing the 2nd last.ckpt

``step:s`` wraps the LightningModule's ``on_train_batch_start`` (called before every training batch) and kills
the process once ``s`` optimizer steps are done. ``save:n`` wraps ``torch.save`` as ``scratchllm.checkpoint.save``
calls it for the n-th ``last.ckpt``: the real bytes are produced, the first half written and fsync'ed to the file
that save opened, then SIGKILL — the moment a crash-unsafe save would leave a truncated target. Then the entry
point runs as ``python -m`` runs it (``runpy``), with the user's overrides as argv.
"""

from __future__ import annotations

import importlib.util
import io
import os
import runpy
import signal
import sys
from pathlib import Path


def die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def kill_at_step(step: int) -> None:
    from scratchllm.training.module import GPTLitModule

    original = GPTLitModule.on_train_batch_start

    def on_train_batch_start(self, batch, batch_idx):
        if self.trainer.global_step == step:
            die()
        return original(self, batch, batch_idx)

    GPTLitModule.on_train_batch_start = on_train_batch_start


def kill_during_save(nth: int) -> None:
    import torch

    from scratchllm import checkpoint

    saves = {"last": 0, "armed": False}
    real_save, real_torch_save = checkpoint.save, torch.save

    def save(ckpt, path, *args, **kwargs):  # SafeCheckpointIO calls checkpoint.save through the module
        if Path(path).name == "last.ckpt":
            saves["last"] += 1
            saves["armed"] = saves["last"] == nth
        return real_save(ckpt, path, *args, **kwargs)

    def torch_save(obj, f, *args, **kwargs):
        if not saves["armed"]:
            return real_torch_save(obj, f, *args, **kwargs)
        buffer = io.BytesIO()
        real_torch_save(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        os.fsync(f.fileno())
        die()

    checkpoint.save = save
    torch.save = torch_save


def main() -> None:
    moment, sep, *overrides = sys.argv[1:]
    assert sep == "--", "usage: kill_runner.py step:<s>|save:<n> -- <train overrides>"
    kind, value = moment.split(":")
    {"step": kill_at_step, "save": kill_during_save}[kind](int(value))
    sys.argv = [importlib.util.find_spec("scratchllm.train").origin, *overrides]
    runpy.run_module("scratchllm.train", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
