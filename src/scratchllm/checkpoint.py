"""Every checkpoint scratchllm writes or reads goes through this module: resolve, save, load, describe.

A checkpoint is Lightning's dict (``state_dict``, ``optimizer_states``, ``hyper_parameters``, loop state …) plus
one key of ours, ``scratchllm_meta``: the format version and what every consumer needs without Lightning or
Hydra — the model config, the tokenizer (its ``to_dict()``, special tokens included), the objective it was
trained with, and room for adapter and quantization state — and a digest of every tensor in the file.

- **Loading** uses ``torch.load(weights_only=True)``: a ``.ckpt`` is a pickle, and unpickling an arbitrary file
  can run arbitrary code; the restricted unpickler rebuilds only tensors and plain containers, all we write. The
  digest is recomputed and compared, so flipped bytes inside a tensor are an error naming the file, not a model
  that silently generates garbage or a resumed run that silently diverges.
- **Saving** is crash-safe on any filesystem: the file is written beside its target under a temporary name,
  flushed and fsync'ed, renamed over the target (atomic on POSIX), and the folder is fsync'ed so the rename
  itself survives a power cut. A kill at any moment leaves either the old file or the new one, never half of
  one; a failed save (disk full) removes its partial file and says how much space it needed.
- **Older checkpoints** (written before ``scratchllm_meta`` existed) still load: their metadata is read from
  Lightning's ``hyper_parameters``; they carry no digest, so they are not verified.

Nothing here imports Lightning: generation loads a checkpoint with one ``torch.load``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import pickle
import socket
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch

from scratchllm.errors import CheckpointError

FORMAT = 1
META = "scratchllm_meta"
DIGEST = "xxh3_128"
# Prefixes a state_dict key may carry in front of the GPT's own parameter names: the LightningModule attribute,
# and torch.compile's wrapper when a model was compiled out of place.
_KEY_PREFIXES = ("model._orig_mod.", "model.")
_FIX = "pass a .ckpt written by training, a Hugging Face folder, a run folder, or ckpt_path=last"


# ------------------------------------------------------------------------------------------- resolution
def resolve(spec: str | Path | None, log_dir: str | Path = "logs") -> Path:
    """What ``ckpt_path=`` names, as a path that exists:

    - ``last``: the newest ``**/checkpoints/last*.ckpt`` under ``log_dir`` (by modification time; ties broken by
      path so the choice is deterministic);
    - a run folder (one holding ``checkpoints/``): its ``last.ckpt``;
    - a file, or a Hugging Face folder (``config.json``): itself.
    """
    if spec in (None, "", "null"):
        raise CheckpointError(
            "no checkpoint given; pass ckpt_path=<file.ckpt, run folder or Hugging Face folder>, or ckpt_path=last "
            "for the newest training run"
        )
    if str(spec) == "last":
        found = sorted(Path(log_dir).glob("**/checkpoints/last*.ckpt"), key=lambda p: (p.stat().st_mtime, str(p)))
        if not found:
            raise CheckpointError(
                f"ckpt_path=last but no checkpoints/last.ckpt exists under {log_dir}; train a model first or pass "
                f"ckpt_path=<file.ckpt or Hugging Face folder>"
            )
        remove_stale_temporaries(found[-1])
        return found[-1]
    path = Path(spec).expanduser()
    if not path.exists():
        raise CheckpointError(
            f"checkpoint {spec} does not exist; pass an existing .ckpt file, run folder or Hugging Face folder, or "
            f"ckpt_path=last for the newest training run"
        )
    if path.is_dir() and (path / "checkpoints").is_dir():
        last = path / "checkpoints" / "last.ckpt"
        if not last.exists():  # a file, or the folder of a sharded (FSDP) checkpoint
            raise CheckpointError(f"run folder {spec} has no checkpoints/last.ckpt; pass one of its .ckpt files")
        return last
    return path


# --------------------------------------------------------------------------------------------- digests
def _tensors(obj: Any, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor inside nested dicts/lists, with a stable path, in a deterministic order."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, Mapping):
        for key in sorted(obj, key=str):
            if prefix == "" and key == META:
                continue
            yield from _tensors(obj[key], f"{prefix}/{key}")
    elif isinstance(obj, (list, tuple)):
        for i, item in enumerate(obj):
            yield from _tensors(item, f"{prefix}/{i}")


def _hasher(algorithm: str) -> Any:
    if algorithm == "xxh3_128":
        import xxhash

        return xxhash.xxh3_128()
    if algorithm == "blake2b":
        return hashlib.blake2b(digest_size=16)
    raise CheckpointError(f"the checkpoint's digest uses {algorithm!r}, which this scratchllm does not know; "
                          f"upgrade scratchllm")


def digest(checkpoint: Mapping[str, Any], algorithm: str = DIGEST) -> str:
    """A hash of every tensor's path, dtype, shape and bytes (the metadata key itself excluded).

    xxh3 (non-cryptographic: it detects corruption, not tampering; weights_only loading is what keeps a hostile
    file from running code) reads ~8 GB/s, so verifying costs a fraction of writing or reading the file; BLAKE2b
    read ~0.5 GB/s here, 20–40% of a save. Only the bytes are hashed (a tensor is copied only to make it
    contiguous)."""
    h = _hasher(algorithm)
    for path, tensor in _tensors(checkpoint):
        t = tensor.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        t = t.contiguous()
        h.update(f"{path}|{t.dtype}|{tuple(t.shape)}".encode())
        if t.numel():
            h.update(memoryview(t.view(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


def remove_stale_temporaries(path: Path) -> None:
    """Delete partial files that killed saves of ``path`` left beside it (SIGKILL runs no cleanup): only those
    whose writer ran on this host and is gone, so a save in progress (another process, another node) is kept."""
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        host, _, pid = tmp.name[len(path.name) + 2:-len(".tmp")].rpartition(".")[0].rpartition(".")
        if host == socket.gethostname() and pid.isdigit() and not process_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (a leftover file's writer may be another user's process:
    counted alive, so its file is kept)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


# ----------------------------------------------------------------------------------------- save / load
def save(checkpoint: dict[str, Any], path: str | Path) -> None:
    """Write ``checkpoint`` to ``path`` atomically and durably, with the digest of its tensors in its metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = checkpoint.setdefault(META, {"format": FORMAT})
    meta["digest"], meta["digest_algorithm"] = digest(checkpoint), DIGEST
    remove_stale_temporaries(path)
    # beside the target (same filesystem); host and pid in the name tell a dead writer's leftover from a live one
    tmp = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        # torch.save turns a failed write into RuntimeError('unexpected pos …'); the OSError is its __context__
        if any(isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT) for e in (err, err.__context__)):
            need = sum(t.numel() * t.element_size() for _, t in _tensors(checkpoint)) / 2**20
            raise CheckpointError(
                f"no space left on the device to save {path}: it needs about {need:,.1f} MB; free space there or "
                f"point paths.log_dir at a larger disk (the last good checkpoint is untouched)"
            ) from None
        raise


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (the directory entry, not only the file's data, must reach the disk)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. a platform without directory file descriptors
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load(path: str | Path, *, verify: bool = True, training: bool = True, mmap: bool = False) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; verify its digest when it has one.

    training: require a training checkpoint (a ``state_dict`` inside); False for any dict we saved (Lightning's
    ddp_spawn hands the weights back from its workers as a bare state dict). mmap: map the tensors instead of
    reading them (a cheap look at the structure; pair with ``verify=False``).
    Every failure is a ``CheckpointError`` naming the file (entry points print it as one line)."""
    file = Path(path)
    not_ours = f"{file} is not a readable scratchllm checkpoint"
    if not file.is_file():
        raise CheckpointError(f"checkpoint {file} does not exist; {_FIX}")
    if file.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {file} is empty (0 bytes: a save was interrupted); resume from another "
                              f"checkpoint of the run, or start a new run without ckpt_path")
    try:
        ckpt = torch.load(file, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        if zipfile.is_zipfile(file):  # a torch.save file whose pickle needs more than tensors and containers
            raise CheckpointError(
                f"{not_ours}: it holds Python objects that weights_only loading refuses to unpickle; {_FIX}"
            ) from err
        raise CheckpointError(f"{not_ours}: torch.load cannot read it (damaged or not a checkpoint); {_FIX}") from err
    except Exception as err:  # noqa: BLE001 - the restricted unpickler fails on foreign bytes in many ways
        raise CheckpointError(f"{not_ours}: torch.load cannot read it ({type(err).__name__}: damaged or not a "
                              f"checkpoint); {_FIX}") from err
    if not isinstance(ckpt, dict) or (training and "state_dict" not in ckpt):
        raise CheckpointError(f"{not_ours}: it has no state_dict; {_FIX}")
    meta = ckpt.get(META) if isinstance(ckpt.get(META), dict) else {}
    expected = meta.get("digest")
    if verify and expected is not None and digest(ckpt, meta.get("digest_algorithm", "blake2b")) != expected:
        raise CheckpointError(
            f"checkpoint {file} is corrupt: its tensors do not match the digest stored when it was saved (bytes "
            f"changed on disk); resume from another checkpoint of the run, or retrain"
        )
    return ckpt


def load_object(stream: Any) -> Any:
    """One ``torch.save``'d object inside another format (the non-tensor items of a sharded checkpoint), with the
    same restricted (``weights_only``) unpickler."""
    return torch.load(stream, map_location="cpu", weights_only=True)


def load_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A plain ``torch.save``'d weights file (a Hugging Face ``pytorch_model.bin``), read with ``weights_only``."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - corrupt or truncated files: say which one
        raise CheckpointError(f"cannot read {path} ({type(err).__name__}); the file is corrupt or not a "
                              f"checkpoint") from err


# ------------------------------------------------------------------------------------------- metadata
@dataclass
class CheckpointMeta:
    """What a checkpoint says about itself (every consumer reads this, never Lightning's layout)."""

    format: int
    model: dict[str, Any]
    tokenizer: dict[str, Any] | None = None
    objective: dict[str, Any] | None = None
    adapters: dict[str, Any] | None = None
    quantization: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "model": self.model, "tokenizer": self.tokenizer,
                "objective": self.objective, "adapters": self.adapters, "quantization": self.quantization,
                **self.extra}


def stamp(checkpoint: dict[str, Any], meta: CheckpointMeta) -> None:
    """Put ``meta`` into ``checkpoint`` (the digest is added by ``save``)."""
    checkpoint[META] = meta.to_dict()


def describe(checkpoint: Mapping[str, Any], file: str | Path = "checkpoint") -> CheckpointMeta:
    """The metadata of a loaded checkpoint: ``scratchllm_meta``, or for an older file, Lightning's hparams."""
    known = {"format", "model", "tokenizer", "objective", "adapters", "quantization", "digest", "digest_algorithm"}
    raw = checkpoint.get(META)
    if isinstance(raw, dict) and isinstance(raw.get("model"), dict):
        if int(raw.get("format", 0)) > FORMAT:
            raise CheckpointError(f"{file} was written by a newer scratchllm (checkpoint format {raw['format']}, "
                                  f"this one reads up to {FORMAT}); upgrade scratchllm to load it")
        return CheckpointMeta(
            format=int(raw.get("format", FORMAT)), model=raw["model"], tokenizer=raw.get("tokenizer"),
            objective=raw.get("objective"), adapters=raw.get("adapters"), quantization=raw.get("quantization"),
            extra={k: v for k, v in raw.items() if k not in known},
        )
    hparams = checkpoint.get("hyper_parameters") or {}
    model = hparams.get("model") if isinstance(hparams, dict) else None
    if not isinstance(model, dict):
        raise CheckpointError(
            f"{file} has no model config (neither scratchllm_meta nor hyper_parameters['model']); it was not "
            f"written by scratchllm's training"
        )
    return CheckpointMeta(format=0, model=model, tokenizer=_tokenizer_of(checkpoint), objective={"name": "lm"})


def model_state(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The GPT's own parameters from a training checkpoint's ``state_dict`` (Lightning's prefixes removed)."""
    state = {}
    for key, value in checkpoint["state_dict"].items():
        for prefix in _KEY_PREFIXES:
            if key.startswith(prefix):
                state[key[len(prefix):]] = value
                break
    return state


def stored_tokenizer(path: str | Path) -> dict[str, Any]:
    """The tokenizer dict a training checkpoint file carries (for ``tokenizer.path=<file.ckpt>`` and the
    tokenizer CLI); ``CheckpointError`` when it has none."""
    tokenizer = _tokenizer_of(load(path, training=False))
    if not tokenizer:
        raise CheckpointError(f"{path} stores no tokenizer; pass the data cache's tokenizer.json instead")
    return dict(tokenizer)


def _tokenizer_of(checkpoint: Mapping[str, Any]) -> dict[str, Any] | None:
    """The tokenizer dict in ``scratchllm_meta``, or where older checkpoints kept it (Lightning's hparams)."""
    meta = checkpoint.get(META)
    if isinstance(meta, dict) and "tokenizer" in meta:
        return meta["tokenizer"]
    hparams = checkpoint.get("hyper_parameters") or {}
    tokenizer = hparams.get("tokenizer_config") if isinstance(hparams, dict) else None
    return tokenizer if isinstance(tokenizer, dict) else None
