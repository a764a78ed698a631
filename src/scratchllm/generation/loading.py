"""From a path on disk to a model ready to decode and the tokenizer that speaks its vocabulary.

Two kinds of checkpoint reach generation:

- a **Lightning checkpoint** written by training (``logs/train/**/checkpoints/*.ckpt``). It carries everything
  needed: the ``ModelConfig`` as a plain dict in ``hyper_parameters["model"]``, the tokenizer's ``to_dict()`` in
  ``hyper_parameters["tokenizer_config"]`` and the weights in ``state_dict`` under ``model.`` (the attribute of
  ``GPTLitModule`` that holds the ``GPT``). ``ckpt_path=last`` picks the newest ``last.ckpt`` under the log folder.
- a **Hugging Face folder** (``config.json`` + safetensors), read by ``scratchllm.interop.hf.load_hf``. It names
  no tokenizer in a form we can trust offline, so we infer one from the vocabulary: 50,257 ids is GPT-2's BPE.

Any other vocabulary (a char model, a trained BPE) needs a tokenizer override. The generate config's ``tokenizer``
node is the training config group (``tokenizer=gpt2|char|bpe|cl100k``) plus ``path``: the file the vocabulary is
read from (``tokenizer_override``). A char vocabulary depends on the training data, so ``tokenizer=char`` alone
cannot rebuild it; it needs the data cache's ``tokenizer.json`` or the training checkpoint.

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

from scratchllm.errors import CheckpointError, ConfigError, DataError
from scratchllm.model import GPT, ModelConfig
from scratchllm.tokenizers import GPT2Tokenizer, Tokenizer, build_tokenizer, load_tokenizer, tokenizer_from_dict

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

    tokenizer: overrides the checkpoint's tokenizer (``tokenizer_override``).
    """
    where = resolve_checkpoint(path, log_dir)
    target_device, target_dtype = resolve_device(device), resolve_dtype(dtype)
    override = tokenizer_override(tokenizer)  # before the weights: a wrong tokenizer costs no loading time
    if where.is_dir():
        model, saved_tokenizer = _load_hf_folder(where)
    else:
        model, saved_tokenizer = _load_lightning(where)
    chosen = override if override is not None else saved_tokenizer
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
    from scratchllm.interop.hf_tokenizer import load_hf_tokenizer

    model = load_hf(folder)
    exported = load_hf_tokenizer(folder)  # an export of ours carries its tokenizer
    if exported is not None:
        return model, exported
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


def tokenizer_override(spec: str | Path | Mapping[str, Any] | None) -> Tokenizer | None:
    """The tokenizer ``spec`` asks for instead of the checkpoint's; None (or an empty spec) keeps the checkpoint's.

    spec: a name (``gpt2``) or a path as a string, as ``build_tokenizer`` reads them; or a mapping: the generate
    config's ``tokenizer`` node, a group option's ``name`` and/or a ``path`` to read the vocabulary from (a
    trained-BPE folder, a ``tokenizer.json``, a data cache folder holding one, or the training ``.ckpt``; for
    cl100k, its ``.tiktoken`` file as in training), or any spec ``build_tokenizer`` takes (e.g. a ``to_dict()``).
    """
    if isinstance(spec, Mapping):
        options = {str(k): v for k, v in spec.items() if v is not None}  # the config node's unset keys are null
        name, path = options.get("name"), options.get("path")
        if path is None or name == "cl100k":  # cl100k's path is its encoding file, as in training
            return _build_named(options) if options else None
        loaded = _read_tokenizer(str(path))
        if name is not None and loaded.name != name:
            raise ConfigError(
                f"tokenizer={name} but tokenizer.path={path} holds a {loaded.name} tokenizer; drop tokenizer={name} "
                f"(the file names its tokenizer) or point tokenizer.path at a {name} one"
            )
        return loaded
    if spec is None or str(spec) == "":
        return None
    return _build_named({"name": "char"}) if str(spec) == "char" else build_tokenizer(str(spec))


def _build_named(options: dict[str, Any]) -> Tokenizer:
    if options.get("name") == "char" and "chars" not in options:
        raise ConfigError(
            "tokenizer=char needs the model's character vocabulary: add tokenizer.path=<the training data cache "
            "folder, its tokenizer.json, or the training .ckpt>"
        )
    if "name" not in options:
        raise ConfigError(
            f"tokenizer.{sorted(options)[0]} is set but no tokenizer is named; pass tokenizer=<gpt2|char|bpe|cl100k> "
            "or tokenizer.path=<tokenizer folder or file>"
        )
    return build_tokenizer(options)


def _read_tokenizer(path: str) -> Tokenizer:
    """The tokenizer stored at ``path``: a training checkpoint's, or a tokenizer folder's or file's."""
    where = Path(path).expanduser()
    if not where.exists():
        raise DataError(f"tokenizer.path={path} does not exist; pass a trained-BPE folder, a tokenizer.json, a data "
                        "cache folder holding one, or the training .ckpt")
    if where.suffix == ".ckpt":
        config = (_read_checkpoint(where).get("hyper_parameters") or {}).get("tokenizer_config")
        if not isinstance(config, dict):
            raise CheckpointError(f"{path} stores no tokenizer; pass the data cache's tokenizer.json instead")
        return tokenizer_from_dict(dict(config))
    return load_tokenizer(path)
