"""Lightning's checkpoint reads and writes, routed through ``scratchllm.checkpoint`` (the one owner).

Lightning's own ``TorchCheckpointIO`` saves through fsspec, which writes a temporary file in the system temp
folder and ``shutil.move``s it: across filesystems (a tmpfs ``/tmp``, logs on a mounted volume) that is a
truncate-and-copy of the target with no fsync, and a kill in that window left a 0-byte ``last.ckpt``. Ours writes
beside the target and renames atomically, stamps a digest, and verifies it when a run resumes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from scratchllm import checkpoint


class SafeCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint_dict: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        checkpoint.save(checkpoint_dict, path)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return checkpoint.load(path, training=False)  # ddp_spawn also passes bare state dicts through here

    def remove_checkpoint(self, path: Any) -> None:
        Path(path).unlink(missing_ok=True)
