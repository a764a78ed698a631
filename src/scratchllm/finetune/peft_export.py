"""Our LoRA adapter in peft's format, for the model ``interop.hf.save_hf`` exports (GPT-2 or Llama layout):

    save_hf(model, "hf")                     # the base weights (a LoRA model's wrappers keep them as `weight`)
    export_peft(model, "hf-adapter")
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained("hf"), "hf-adapter")  # == our logits

The module names follow save_hf's own map (``interop.hf``'s links), so both exports always agree. Where we fuse
matrices that Hugging Face keeps apart (Llama's q/k/v and gate/up) one LoRA update ``B A`` becomes one per part:
each part keeps the same ``A`` and takes its rows of ``B``, which computes exactly the fused update. GPT-2's
Conv1D layers store their weight transposed, so peft needs ``fan_in_fan_out``; the LoRA matrices are the same.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from scratchllm.errors import ConfigError
from scratchllm.finetune.lora import lora_layers
from scratchllm.interop.hf import export_format, hf_name, tensor_links

PEFT_WEIGHTS = "adapter_model.safetensors"
PEFT_CONFIG = "adapter_config.json"


def export_peft(model: nn.Module, folder: str | Path) -> Path:
    """Write ``model``'s LoRA adapter as peft's ``adapter_model.safetensors`` + ``adapter_config.json``."""
    from safetensors.torch import save_file

    layers = lora_layers(model)
    if not layers:
        raise ConfigError("the model has no LoRA adapter to export; train with adapter=lora or load_adapter first")
    if any(layer.merged for layer in layers.values()):
        raise ConfigError("the adapter is merged into the weights; unmerge it before exporting it alone")
    model_type = export_format(model.config)
    links = {link.ours: link for link in tensor_links(model_type, model.config)}
    tensors: dict[str, torch.Tensor] = {}
    targets: list[str] = []
    for name, layer in layers.items():
        link = links[f"{name}.weight"]
        theirs = [hf_name(model_type, t).removesuffix(".weight") for t in link.theirs]
        b_parts = layer.lora_B.weight.detach().split(list(link.split), dim=0) if link.split \
            else (layer.lora_B.weight.detach(),)
        for module, b in zip(theirs, b_parts):
            tensors[f"base_model.model.{module}.lora_A.weight"] = layer.lora_A.weight.detach().cpu().clone()
            tensors[f"base_model.model.{module}.lora_B.weight"] = b.cpu().clone().contiguous()
            targets.append(module)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / PEFT_WEIGHTS), metadata={"format": "pt"})
    config = model.lora_config
    (folder / PEFT_CONFIG).write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": config.rank, "lora_alpha": config.alpha,
        "lora_dropout": config.dropout, "target_modules": targets, "fan_in_fan_out": model_type == "gpt2",
        "bias": "none", "init_lora_weights": True, "base_model_name_or_path": None, "modules_to_save": None,
        "inference_mode": True,
    }, indent=2))
    return folder
