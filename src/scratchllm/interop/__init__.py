"""Bridges to other model formats. ``load_hf`` / ``save_hf``: Hugging Face GPT-2 and Llama checkpoint folders,
with the tokenizer files ``transformers.AutoTokenizer`` loads (``save_hf_tokenizer`` / ``load_hf_tokenizer``)."""

from scratchllm.interop.hf import load_hf, save_hf
from scratchllm.interop.hf_tokenizer import load_hf_tokenizer, save_hf_tokenizer

__all__ = ["load_hf", "save_hf", "load_hf_tokenizer", "save_hf_tokenizer"]
