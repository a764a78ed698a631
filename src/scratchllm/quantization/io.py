"""The quantized model file: one safetensors file of packed integer weights, scales and the few float tensors, with
the checkpoint metadata (``scratchllm.checkpoint.CheckpointMeta``: model config, tokenizer, and the
``quantization`` settings) as JSON in the safetensors header.

Float tensors are stored in bfloat16 (the dequantised values barely change: see ``STORE_DTYPE``) and read back into
float32. Loading builds the quantized skeleton (``quantized_skeleton``: the float model only ever exists on the meta
device) and assigns the file's tensors into it, so at no point is a full-precision copy of the weights in memory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from scratchllm.checkpoint import CheckpointMeta
from scratchllm.errors import CheckpointError
from scratchllm.model import GPT, ModelConfig
from scratchllm.quantization.model import QuantConfig, quantized_skeleton

META_KEY = "scratchllm_meta"
FORMAT_KEY = "format"
# 2: the learned position table is int8 rows (quantization/model.py). 1: it was a float tensor; such files still
# load (their settings lack ``quantize_positions``, so the skeleton keeps a float table).
FORMAT = "scratchllm-quantized-2"
READABLE = ("scratchllm-quantized-1", FORMAT)
_FAMILY = "scratchllm-quantized-"
STORE_DTYPE = torch.bfloat16


def save_quantized(model: GPT, meta: CheckpointMeta, path: str | Path) -> Path:
    """Write the quantized ``model`` (its metadata's ``quantization`` says how) to ``path``; returns it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The float tensors left (norms, biases, int8 scales: ~0.3% of gpt2-124m's bytes) are stored in bfloat16, like
    # int4's scales: in float32 they would add another ~0.3% to gpt2-124m's int8 file.
    tensors = {name: (t.to(STORE_DTYPE) if t.is_floating_point() else t).detach().contiguous()
               for name, t in model.state_dict().items()}
    header = {FORMAT_KEY: FORMAT, META_KEY: json.dumps(meta.to_dict())}
    tmp = path.with_name(f".{path.name}.tmp")  # a crash leaves the old file or the new one, not half of one
    save_file(tensors, str(tmp), metadata=header)
    tmp.replace(path)
    return path


def read_meta(path: str | Path) -> CheckpointMeta | None:
    """The metadata of a quantized file, or None when ``path`` is not one (any other file, or not safetensors)."""
    path = Path(path)
    if not path.is_file() or path.suffix != ".safetensors":
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except Exception:  # noqa: BLE001 - not a safetensors file: not ours either
        return None
    fmt = str(header.get(FORMAT_KEY, ""))
    if not fmt.startswith(_FAMILY):
        return None
    if fmt not in READABLE:
        raise CheckpointError(f"{path} is a quantized file of a newer format ({fmt}) than this scratchllm reads "
                              f"({', '.join(READABLE)}); update scratchllm, or quantize the float checkpoint again")
    raw = json.loads(header[META_KEY])
    known = {"format", "model", "tokenizer", "objective", "adapters", "quantization"}
    return CheckpointMeta(format=int(raw.get("format", 1)), model=raw["model"], tokenizer=raw.get("tokenizer"),
                          objective=raw.get("objective"), adapters=raw.get("adapters"),
                          quantization=raw.get("quantization"),
                          extra={k: v for k, v in raw.items() if k not in known and k != "digest"})


def load_quantized(path: str | Path) -> tuple[GPT, CheckpointMeta]:
    """The quantized GPT stored at ``path`` (eval mode, on the CPU) and its metadata."""
    meta = read_meta(path)
    if meta is None or not meta.quantization:
        raise CheckpointError(f"{path} is not a quantized scratchllm file; write one with python -m "
                              f"scratchllm.quantize ckpt_path=<training .ckpt> output={path}")
    model = quantized_skeleton(ModelConfig.from_dict(meta.model), QuantConfig.from_dict(meta.quantization))
    wanted = {name: t.dtype for name, t in model.state_dict().items()}  # float32, except int4's bf16 scales
    tensors: dict[str, Any] = {}
    for name, t in read_tensors(path):
        tensors[name] = t.to(wanted[name]) if name in wanted and t.is_floating_point() else t
    try:
        model.load_state_dict(tensors, strict=True, assign=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: its tensors do not fit its own model config ({str(err).splitlines()[0]}); "
                              f"the file is damaged: quantize the training checkpoint again") from None
    left = [n for n, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
    if left:
        raise CheckpointError(f"{path} lacks {', '.join(left[:3])}; the file is damaged: quantize again")
    return model.eval(), meta


_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                       "U8": torch.uint8, "BOOL": torch.bool}


def read_tensors(path: str | Path) -> Any:
    """Each ``(name, tensor)`` of a safetensors file, read with plain file reads into fresh tensors.

    Not ``safe_open``: it maps the file, and the mapped pages stay resident beside the copies until the file is
    closed, so loading would peak at twice the weights. Fresh ``torch.empty`` storage is also 64-byte aligned,
    which ``_weight_int8pack_mm`` needs (a tensor viewing the mapped file may not be)."""
    with open(path, "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(header_len))
        base = 8 + header_len
        for name, info in header.items():
            if name == "__metadata__":
                continue
            start, end = info["data_offsets"]
            t = torch.empty(info["shape"], dtype=_SAFETENSORS_DTYPES[info["dtype"]])
            if end > start:
                f.seek(base + start)
                view = t.view(-1).view(torch.uint8).numpy()
                if f.readinto(memoryview(view)) != end - start:
                    raise CheckpointError(f"{path} ends inside tensor {name}: the file is truncated; write it again")
            yield name, t


def file_bytes(path: str | Path) -> int:
    return Path(path).stat().st_size


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of every tensor the model holds (parameters and persistent buffers), each shared tensor once."""
    seen, total = set(), 0
    for t in model.state_dict(keep_vars=True).values():
        if t.data_ptr() in seen:
            continue
        seen.add(t.data_ptr())
        total += t.numel() * t.element_size()
    return total


def quantize_checkpoint(ckpt_path: str | Path, quant: QuantConfig, output: str | Path | None = None, *,
                        log_dir: str | Path = "logs", log: Any = print) -> Path:
    """Read a float checkpoint (training ``.ckpt`` or Hugging Face folder), quantize it, write the packed file.

    output: None = beside the checkpoint, ``<name>.<method>[-g<group>].safetensors``. ``log`` gets progress lines."""
    from scratchllm import checkpoint
    from scratchllm.generation.loading import load_for_generation
    from scratchllm.quantization.model import quantize_model

    source = checkpoint.resolve(ckpt_path, log_dir)
    if read_meta(source) is not None:
        raise CheckpointError(f"{source} is already quantized; quantize the float checkpoint it was made from "
                              f"(the training .ckpt or Hugging Face folder) instead")
    log(f"loading {source}")
    model, tokenizer = load_for_generation(source, device="cpu", dtype="float32", log_dir=log_dir)
    quant.check_shapes(model.config)  # before the slow part
    float_bytes = weight_bytes(model)
    layers = quantize_model(model, quant)
    suffix = quant.method + (f"-g{quant.group_size}{'-sym' if quant.symmetric else ''}" if quant.method == "int4"
                             else "")
    target = Path(output) if output else source.with_name(f"{source.stem}.{suffix}.safetensors")
    if target.suffix != ".safetensors":
        raise CheckpointError(f"output={target} must end in .safetensors (the quantized file is safetensors)")
    meta = CheckpointMeta(format=1, model=model.config.to_dict(),
                          tokenizer=tokenizer.to_dict() if tokenizer is not None else None,
                          objective={"name": "lm"}, quantization=quant.to_dict())
    save_quantized(model, meta, target)
    log(f"quantized {len(layers)} layers to {quant.method}: weights {float_bytes / 2**20:,.1f} MB float32 → "
        f"{file_bytes(target) / 2**20:,.1f} MB on disk ({file_bytes(target) / float_bytes:.2f}×); wrote {target}")
    return target
