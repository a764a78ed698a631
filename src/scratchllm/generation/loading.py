"""From a path on disk to a model ready to decode and the tokenizer that speaks its vocabulary.

Two kinds of checkpoint reach generation:

- a **training checkpoint** (``logs/train/**/checkpoints/*.ckpt``), read, verified and described by
  ``scratchllm.checkpoint`` (the one module that loads checkpoints): the model config and the tokenizer's
  ``to_dict()`` come from its metadata, the weights from its ``state_dict``. ``ckpt_path=last`` picks the newest
  ``last.ckpt`` under the log folder; a run folder means its ``checkpoints/last.ckpt``.
- a **Hugging Face folder** (``config.json`` + safetensors), read by ``scratchllm.interop.hf.load_hf``. It names
  no tokenizer in a form we can trust offline, so we infer one from the vocabulary: 50,257 ids is GPT-2's BPE.

Any other vocabulary (a char model, a trained BPE) needs a tokenizer override. The generate config's ``tokenizer``
node is the training config group (``tokenizer=gpt2|char|bpe|cl100k``) plus ``path``: the file the vocabulary is
read from (``tokenizer_override``). A char vocabulary depends on the training data, so ``tokenizer=char`` alone
cannot rebuild it; it needs the data cache's ``tokenizer.json`` or the training checkpoint.

Nothing here imports Lightning: loading a checkpoint for generation costs one ``torch.load`` (weights only).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from scratchllm import checkpoint
from scratchllm.errors import CheckpointError, ConfigError, DataError
from scratchllm.model import GPT, ModelConfig
from scratchllm.tokenizers import GPT2Tokenizer, Tokenizer, build_tokenizer, load_tokenizer, tokenizer_from_dict

GPT2_VOCAB = 50257
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}


# ------------------------------------------------------------------------------------------- resolution
# The one rule (scratchllm.checkpoint.resolve), under the name generation has always exported.
resolve_checkpoint = checkpoint.resolve


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
    """``float32`` / ``bfloat16`` (also as torch dtypes; None = float32; ``auto`` is resolved by the loader)."""
    if dtype is None or str(dtype) == "auto":  # the loader turns auto into bf16 for quantized weights first
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype in DTYPES.values():
            return dtype
        raise ConfigError(f"dtype={dtype} is not supported for generation; choose one of: {', '.join(DTYPES)}")
    if str(dtype) not in DTYPES:
        raise ConfigError(f"dtype={dtype!r} is not supported for generation; choose one of: {', '.join(DTYPES)}")
    return DTYPES[str(dtype)]


# ---------------------------------------------------------------------------------------------- loading
@dataclass
class LoadOptions:
    """The options of every command that loads a model to run it (generate, evaluate, serve; each yaml says what
    they do): the checkpoint, where and in which dtype it runs, quantization on load, the tokenizer, torch threads.
    Checked when built, so a typo costs no loading time. The commands' option classes extend it."""

    ckpt_path: str = "last"
    device: str = "auto"
    dtype: str = "float32"
    quantize: str | None = None  # int8 | int4: quantize the loaded float weights (scratchllm.quantization)
    tokenizer: Mapping[str, Any] | str | None = None  # null keys keep the checkpoint's (tokenizer_override)
    threads: int | str | None = None  # the yamls say auto; from Python, torch is left alone
    log_dir: str = "logs"

    def __post_init__(self) -> None:
        from scratchllm.quantization.model import METHODS
        from scratchllm.threads import check_threads

        check_threads(self.threads)
        resolve_dtype(self.dtype)
        if self.quantize not in (None, "", "none", *METHODS):
            raise ConfigError(f"quantize={self.quantize!r} is not known; choose one of: none, {', '.join(METHODS)}")
        resolve_device(self.device)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Any:
        """The options from a composed config (keys that are not fields are Hydra's or another command's)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def tokenizer_spec(self) -> Mapping[str, Any] | str | None:
        """What ``load_for_generation`` reads: the tokenizer node without generate's prompt policy (``unknown``)."""
        if isinstance(self.tokenizer, Mapping):
            return {k: v for k, v in self.tokenizer.items() if k != "unknown"}
        return self.tokenizer

    def load(self, where: str | Path | None = None) -> tuple[GPT, Tokenizer | None]:
        """``load_for_generation`` with these options (``where``: an already resolved checkpoint)."""
        return load_for_generation(self.ckpt_path if where is None else where, device=self.device, dtype=self.dtype,
                                   tokenizer=self.tokenizer_spec(), log_dir=self.log_dir, quantize=self.quantize)


def load_for_generation(
    path: str | Path,
    *,
    device: str | torch.device | None = "cpu",
    dtype: str | torch.dtype | None = torch.float32,
    tokenizer: str | Path | Mapping[str, Any] | None = None,
    log_dir: str | Path = "logs",
    quantize: str | None = None,
) -> tuple[GPT, Tokenizer | None]:
    """Load a training checkpoint (``.ckpt``), a Hugging Face folder or a quantized file (``.safetensors`` written
    by ``scratchllm.quantize``) as an eval-mode ``GPT`` on ``device`` with its float weights cast to ``dtype``,
    plus its tokenizer (None when none is known: the caller works in token ids).

    tokenizer: overrides the checkpoint's tokenizer (``tokenizer_override``).
    quantize: ``int8`` | ``int4`` quantizes the float weights after loading (``scratchllm.quantization``).
    """
    from scratchllm.quantization import QuantConfig, quantize_model, read_meta

    where = resolve_checkpoint(path, log_dir)
    quant = QuantConfig(method=str(quantize)) if quantize not in (None, "", "none") else None
    if str(dtype) == "auto":
        # torch's int8 / int4 CPU kernels are fast only with bf16 activations (fp32 ones take a path ~100x slower
        # for one row), so quantized weights decode in bf16; float weights keep float32 (bf16 is a choice)
        quantized = quant is not None or (where.is_file() and read_meta(where) is not None)
        dtype = "bfloat16" if quantized else "float32"
    target_device, target_dtype = resolve_device(device), resolve_dtype(dtype)
    override = tokenizer_override(tokenizer)  # before the weights: a wrong tokenizer costs no loading time
    if where.is_dir() and (where / "meta.pt").is_file():  # written by FSDP with state_dict_type=sharded
        raise CheckpointError(f"{where} is a sharded (FSDP) checkpoint folder; make one file of it first: python -m "
                              f"scratchllm.export format=ckpt ckpt_path={where} output=model.ckpt")
    if where.is_dir():
        model, saved_tokenizer = _load_hf_folder(where)
    elif read_meta(where) is not None:
        if quant is not None:
            raise ConfigError(f"{where} is already quantized; drop quantize={quantize}")
        model, saved_tokenizer = _load_quantized(where)
    else:
        model, saved_tokenizer = _load_lightning(where)
    chosen = override if override is not None else saved_tokenizer
    if chosen is not None and chosen.vocab_size > model.config.vocab_size:
        raise ConfigError(
            f"the tokenizer ({chosen.name}, {chosen.vocab_size} ids) emits ids the model ({model.config.vocab_size} "
            f"ids) cannot read; pass the tokenizer the model was trained with (tokenizer=...)"
        )
    if quant is not None:
        quantize_model(model, quant)  # from the float32 weights, before any cast to dtype
    model.to(device=target_device, dtype=target_dtype)
    return model.eval(), chosen


def _load_quantized(file: Path) -> tuple[GPT, Tokenizer | None]:
    from scratchllm.quantization import load_quantized

    model, meta = load_quantized(file)
    return model, tokenizer_from_dict(dict(meta.tokenizer)) if meta.tokenizer else None


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


def _load_lightning(file: Path) -> tuple[GPT, Tokenizer | None]:
    ckpt = checkpoint.load(file)
    meta = checkpoint.describe(ckpt, file)
    if (meta.objective or {}).get("name") == "classify":
        raise CheckpointError(f"{file} is a classifier (objective=classify): it labels texts and has no use for "
                              f"generation; generate from the checkpoint it was fine-tuned from")
    model = GPT(ModelConfig.from_dict(meta.model))
    if meta.adapters:  # a LoRA run: wrap the same linears, load base + adapter, then fold the update in
        from scratchllm.finetune.lora import apply_lora, merge

        apply_lora(model, meta.adapters)
    missing, unexpected = model.load_state_dict(checkpoint.model_state(ckpt), strict=False)
    if meta.adapters:
        merge(model)
    if missing or unexpected:
        shown = ", ".join((missing or unexpected)[:3])
        raise CheckpointError(
            f"{file}: the weights do not fit the stored model config ({'missing' if missing else 'unexpected'} "
            f"{shown}{' …' if len(missing or unexpected) > 3 else ''}); the checkpoint is damaged or not scratchllm's"
        )
    tokenizer = tokenizer_from_dict(dict(meta.tokenizer)) if meta.tokenizer else None
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
        return tokenizer_from_dict(checkpoint.stored_tokenizer(where))
    return load_tokenizer(path)
