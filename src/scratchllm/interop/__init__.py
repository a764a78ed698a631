"""Bridges to other model formats. ``load_hf`` / ``save_hf``: Hugging Face GPT-2 and Llama checkpoint folders."""

from scratchllm.interop.hf import load_hf, save_hf

__all__ = ["load_hf", "save_hf"]
