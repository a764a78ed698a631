"""From a path on disk to a model ready to decode and the tokenizer that speaks its vocabulary.

Two kinds of checkpoint reach generation:

- a **Lightning checkpoint** written by training (``logs/train/**/checkpoints/*.ckpt``). It carries everything
  needed: the ``ModelConfig`` as a plain dict in ``hyper_parameters["model"]``, the tokenizer's ``to_dict()`` in
  ``hyper_parameters["tokenizer_config"]`` and the weights in ``state_dict`` under ``model.`` (the attribute of
  ``GPTLitModule`` that holds the ``GPT``). ``ckpt_path=last`` picks the newest ``last.ckpt`` under the log folder.
- a **Hugging Face folder** (``config.json`` + safetensors), read by ``scratchllm.interop.hf.load_hf``. It names
  no tokenizer in a form we can trust offline, so we infer one from the vocabulary: 50,257 ids is GPT-2's BPE.

Why ``weights_only=True``: a ``.ckpt`` is a pickle, and unpickling an arbitrary file can run arbitrary code.
The restricted unpickler only rebuilds tensors and plain containers, which is all our checkpoints hold (training
saves plain dicts on purpose). A file that needs more than that is not one of ours and is refused.

Nothing here imports Lightning: loading a checkpoint for generation costs one ``torch.load``.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch

from scratchllm.errors import CheckpointError, ConfigError
from scratchllm.model import GPT, ModelConfig
from scratchllm.tokenizers import GPT2Tokenizer, Tokenizer, build_tokenizer, tokenizer_from_dict

GPT2_VOCAB = 50257
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# Prefixes a state_dict key may carry in front of the GPT's own parameter names: the LightningModule attribute,
# and torch.compile's wrapper when a model was compiled out of place.
_KEY_PREFIXES = ("model._orig_mod.", "model.")


# ------------------------------------------------------------------------------------------- resolution
def resolve_checkpoint(path: str | Path | None, log_dir: str | Path = "logs") -> Path:
    """``last`` → the newest ``**/checkpoints/last*.ckpt`` under ``log_dir``; otherwise a file or folder that
    must exist. Raises ``CheckpointError`` naming the path and the ``ckpt_path=last`` alternative."""
    if path in (None, "", "null"):
        raise CheckpointError(
            "no checkpoint given; pass ckpt_path=<file.ckpt or Hugging Face folder>, or ckpt_path=last for the "
            "newest training run"
        )
    if str(path) == "last":
        found = sorted(Path(log_dir).glob("**/checkpoints/last*.ckpt"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise CheckpointError(
                f"ckpt_path=last but no checkpoints/last.ckpt exists under {log_dir}; train a model first or pass "
                f"ckpt_path=<file.ckpt or Hugging Face folder>"
            )
        return found[-1]
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise CheckpointError(
            f"checkpoint {path} does not exist; pass an existing .ckpt file or Hugging Face folder, or "
            f"ckpt_path=last for the newest training run"
        )
    return resolved


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``auto``/None → cuda when available, else cpu; anything else as torch names it (``cpu``, ``cuda:1``)."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"device={device!r} is not a device; use auto, cpu or cuda") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={device} but CUDA is not available here; use device=cpu (or device=auto)")
    return resolved


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """``float32`` / ``bfloat16`` (also as torch dtypes; None = float32)."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype in DTYPES.values():
            return dtype
        raise ConfigError(f"dtype={dtype} is not supported for generation; choose one of: {', '.join(DTYPES)}")
    if str(dtype) not in DTYPES:
        raise ConfigError(f"dtype={dtype!r} is not supported for generation; choose one of: {', '.join(DTYPES)}")
    return DTYPES[str(dtype)]


# ---------------------------------------------------------------------------------------------- loading
def load_for_generation(
    path: str | Path,
    *,
    device: str | torch.device | None = "cpu",
    dtype: str | torch.dtype | None = torch.float32,
    tokenizer: str | Path | Mapping[str, Any] | None = None,
    log_dir: str | Path = "logs",
) -> tuple[GPT, Tokenizer | None]:
    """Load a training checkpoint (``.ckpt``) or a Hugging Face folder as an eval-mode ``GPT`` on ``device`` with
    its weights cast to ``dtype``, plus its tokenizer (None when none is known: the caller works in token ids).

    tokenizer: overrides the checkpoint's tokenizer: a name (``gpt2``), a path (a trained-BPE folder, a saved
        ``tokenizer.json``, or a data cache folder holding one), or a spec mapping as ``build_tokenizer`` takes.
    """
    where = resolve_checkpoint(path, log_dir)
    target_device, target_dtype = resolve_device(device), resolve_dtype(dtype)
    if where.is_dir():
        model, saved_tokenizer = _load_hf_folder(where)
    else:
        model, saved_tokenizer = _load_lightning(where)
    chosen = _build_tokenizer_override(tokenizer) if tokenizer not in (None, "") else saved_tokenizer
    if chosen is not None and chosen.vocab_size > model.config.vocab_size:
        raise ConfigError(
            f"the tokenizer ({chosen.name}, {chosen.vocab_size} ids) emits ids the model ({model.config.vocab_size} "
            f"ids) cannot read; pass the tokenizer the model was trained with (tokenizer=...)"
        )
    model.to(device=target_device, dtype=target_dtype)
    return model.eval(), chosen


def _load_hf_folder(folder: Path) -> tuple[GPT, Tokenizer | None]:
    from scratchllm.interop.hf import load_hf

    if not (folder / "config.json").is_file():
        raise CheckpointError(
            f"{folder} is a folder without config.json: not a Hugging Face checkpoint; pass a .ckpt file, a "
            f"Hugging Face folder, or ckpt_path=last"
        )
    model = load_hf(folder)
    return model, GPT2Tokenizer() if model.config.vocab_size == GPT2_VOCAB else None


def _read_checkpoint(file: Path) -> dict[str, Any]:
    not_ours = f"{file} is not a scratchllm training checkpoint"
    fix = "pass a .ckpt written by training, a Hugging Face folder, or ckpt_path=last"
    try:
        ckpt = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if zipfile.is_zipfile(file):  # a torch.save file whose pickle needs more than tensors and containers
            raise CheckpointError(
                f"{not_ours}: it holds Python objects that weights_only loading refuses to unpickle; {fix}"
            ) from err
        raise CheckpointError(f"{not_ours}: torch.load cannot read it; {fix}") from err
    except Exception as err:  # noqa: BLE001 - the restricted unpickler fails on foreign bytes in many ways
        raise CheckpointError(f"{not_ours}: torch.load cannot read it ({type(err).__name__}); {fix}") from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{not_ours}: it has no state_dict; {fix}")
    return ckpt


def _load_lightning(file: Path) -> tuple[GPT, Tokenizer | None]:
    ckpt = _read_checkpoint(file)
    hparams = ckpt.get("hyper_parameters") or {}
    model_dict = hparams.get("model") if isinstance(hparams, dict) else None
    if not isinstance(model_dict, dict):
        raise CheckpointError(
            f"{file} has no hyper_parameters['model'] (the ModelConfig training stores); it was not written by "
            f"scratchllm's training"
        )
    config = ModelConfig.from_dict(model_dict)
    state = {}
    for key, value in ckpt["state_dict"].items():
        for prefix in _KEY_PREFIXES:
            if key.startswith(prefix):
                state[key[len(prefix):]] = value
                break
    model = GPT(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        shown = ", ".join((missing or unexpected)[:3])
        raise CheckpointError(
            f"{file}: the weights do not fit the stored model config ({'missing' if missing else 'unexpected'} "
            f"{shown}{' …' if len(missing or unexpected) > 3 else ''}); the checkpoint is damaged or not scratchllm's"
        )
    tokenizer_config = hparams.get("tokenizer_config")
    tokenizer = tokenizer_from_dict(dict(tokenizer_config)) if isinstance(tokenizer_config, dict) else None
    return model, tokenizer


def _build_tokenizer_override(spec: str | Path | Mapping[str, Any]) -> Tokenizer:
    """A tokenizer name, a path (trained-BPE folder, tokenizer.json, or a data cache folder holding one), or a
    spec mapping: whatever ``build_tokenizer`` reads."""
    if isinstance(spec, Mapping):
        return build_tokenizer(spec)
    if str(spec) == "char":
        raise ConfigError(
            "tokenizer=char needs the character vocabulary: pass the tokenizer.json of the data cache the model "
            "was trained on (tokenizer=<cache folder or tokenizer.json>)"
        )
    return build_tokenizer(str(spec))
