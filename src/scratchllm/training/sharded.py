"""Sharded checkpoints (``trainer=fsdp``/``fsdp_sim`` with ``state_dict_type: sharded``): a folder in place of
the ``.ckpt`` file, where every rank writes only its own shard, so a 10B model is never gathered onto one device.

Layout (Lightning's, so its ``_is_sharded_checkpoint`` recognises it): torch.distributed.checkpoint (DCP) files
``__<rank>_0.distcp`` + ``.metadata`` hold ``model`` (the module's state) and ``optimizer_<i>`` (each optimizer's,
keyed by parameter name); ``meta.pt`` holds everything else (loops, schedulers, callbacks, ``scratchllm_meta``),
written and read by ``scratchllm.checkpoint`` (atomic save, digest, ``weights_only`` load).

- **Saving** writes into a hidden sibling folder and renames it over the target once every rank is done, so a kill
  mid-save leaves the previous checkpoint whole (between the two renames of the swap the old folder waits under a
  hidden name; ``.<name>.sharding*.<host>.<pid>.<hex>`` leftovers of dead writers are removed by the next save).
- **Loading** reads DCP's non-tensor items (optimizer ``param_groups``) with ``weights_only=True`` too (DCP's own
  planner unpickles them without that restriction).
- **Converting** (``python -m scratchllm.export format=ckpt ckpt_path=<folder> output=<file>.ckpt``) reads all
  shards in one process without ``torch.distributed``, re-keys the optimizer state by parameter index (as a
  single-process optimizer keys it) and saves one regular checkpoint that ``generate``, ``export``, ``init_from``
  and a single-process resume read.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import uuid
from pathlib import Path
from typing import Any, Callable

from scratchllm import checkpoint as ckpt_lib
from scratchllm.errors import CheckpointError

META_FILE = "meta.pt"  # lightning.fabric.strategies.fsdp._METADATA_FILENAME
_TAG = "sharding"  # hidden siblings: .<name>.sharding.<host>.<pid>.<hex> (being written), .sharding-old. (swapped out)


def is_sharded(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / META_FILE).is_file() and (path / ".metadata").is_file()


def load_meta(path: str | Path) -> dict[str, Any]:
    """Everything but the model and optimizer tensors (verified, ``weights_only``)."""
    return ckpt_lib.load(Path(path) / META_FILE, training=False)


def _planner(empty: bool):
    """DCP's load planner, with its non-tensor items unpickled by the restricted (``weights_only``) unpickler."""
    from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner, _EmptyStateDictLoadPlanner
    from torch.distributed.checkpoint import default_planner

    base = _EmptyStateDictLoadPlanner if empty else DefaultLoadPlanner

    class WeightsOnly(base):  # type: ignore[misc, valid-type]
        def load_bytes(self, read_item, value: io.BytesIO) -> None:
            obj = ckpt_lib.load_object(value)
            if self.flatten_state_dict:
                default_planner.set_element(self.original_state_dict, self.mappings[read_item.dest_index.fqn], obj)
            else:
                self.state_dict[read_item.dest_index.fqn] = obj

    return WeightsOnly()


def dcp_load(state: dict[str, Any], path: Path) -> None:
    import torch.distributed.checkpoint as dcp

    dcp.load(state, checkpoint_id=path, planner=_planner(empty=False))


def save(checkpoint: dict[str, Any], path: Path, *, rank: int, broadcast: Callable[[Any], Any],
         barrier: Callable[[], None]) -> None:
    """Every rank: write its shards of ``checkpoint['state_dict']`` / ``['optimizer_states']`` (sharded state
    dicts); rank 0 also the rest, then swaps the finished folder in."""
    import torch.distributed.checkpoint as dcp

    tmp = Path(broadcast(str(_sibling(path, _TAG))))
    state = {"model": checkpoint.pop("state_dict")}
    state.update({f"optimizer_{i}": s for i, s in enumerate(checkpoint.pop("optimizer_states", []))})
    if rank == 0:
        _remove_stale(path)
    barrier()
    dcp.save(state, checkpoint_id=tmp)  # collective; DCP fsyncs its files
    if rank == 0:
        ckpt_lib.save(checkpoint, tmp / META_FILE)
        _swap(tmp, path)
    barrier()  # nobody reads or overwrites the checkpoint before it is in place


def _sibling(path: Path, tag: str) -> Path:
    return path.with_name(f".{path.name}.{tag}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}")


def _swap(new: Path, path: Path) -> None:
    old = None
    if path.exists():
        old = _sibling(path, _TAG + "-old")
        os.replace(path, old)
    os.replace(new, path)
    ckpt_lib.fsync_dir(path.parent)
    if old is not None:
        shutil.rmtree(old) if old.is_dir() else old.unlink()


def _remove_stale(path: Path) -> None:
    """Folders that killed sharded saves of ``path`` left beside it (only those of dead writers on this host)."""
    for tmp in path.parent.glob(f".{path.name}.{_TAG}*.*"):
        _, _, rest = tmp.name[len(path.name) + 2:].partition(".")
        host, _, pid = rest.rpartition(".")[0].rpartition(".")
        if host == socket.gethostname() and pid.isdigit() and not ckpt_lib.process_alive(int(pid)):
            remove(tmp)


def remove(path: str | Path) -> None:
    path = Path(path)
    shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------ conversion
def _by_index(optim: dict[str, Any]) -> dict[str, Any]:
    """An optimizer state keyed by parameter name → keyed by index, numbered across param groups in order (how
    ``torch.optim.Optimizer.state_dict`` numbers them)."""
    groups, index = [], {}
    for group in optim["param_groups"]:
        ids = []
        for name in group["params"]:
            index[name] = len(index)
            ids.append(index[name])
        groups.append({**group, "params": ids})
    return {"state": {index[name]: value for name, value in optim["state"].items()}, "param_groups": groups}


def consolidate(path: str | Path) -> dict[str, Any]:
    """One regular (Lightning-format) checkpoint from a sharded folder, in this process (no process group)."""
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict

    path = Path(path)
    if not is_sharded(path):
        raise CheckpointError(f"{path} is not a sharded checkpoint folder (no {META_FILE} and .metadata in it); "
                              f"pass the folder an FSDP run with state_dict_type=sharded wrote")
    checkpoint = load_meta(path)
    state: dict[str, Any] = {}
    try:
        # what torch's own dcp_to_torch_save calls: the public dcp.load fills a copy of an empty state dict
        _load_state_dict(state, storage_reader=FileSystemReader(path), planner=_planner(empty=True), no_dist=True)
    except Exception as err:  # noqa: BLE001 - missing or damaged shard files
        raise CheckpointError(f"cannot read the shards of {path} ({type(err).__name__}: a shard file is missing or "
                              f"damaged); convert another checkpoint of the run") from err
    checkpoint["state_dict"] = state.pop("model")
    optimizers = sorted((k for k in state if k.startswith("optimizer_")), key=lambda k: int(k.split("_")[1]))
    checkpoint["optimizer_states"] = [_by_index(state[k]) for k in optimizers]
    return checkpoint


def convert(path: str | Path, output: str | Path) -> Path:
    """Write ``consolidate(path)`` to ``output`` (atomically, with a digest); returns the output path."""
    output = Path(output)
    if output.resolve() == Path(path).resolve():
        raise CheckpointError(f"output={output} is the sharded folder itself; name a new file, e.g. model.ckpt")
    ckpt_lib.save(consolidate(path), output)
    return output
