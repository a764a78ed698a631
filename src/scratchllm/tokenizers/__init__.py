"""Tokenizers behind one interface: ``char`` (fitted on the training text) and ``gpt2`` (tiktoken, offline).

    from scratchllm.tokenizers import build_tokenizer
    tok = build_tokenizer("gpt2")
    tok.decode(tok.encode("Who's there?"))
"""

from scratchllm.tokenizers.base import Tokenizer, load_tokenizer, tokenizer_from_dict
from scratchllm.tokenizers.char import CharTokenizer
from scratchllm.tokenizers.factory import build_tokenizer, normalize_spec, tokenizer_names
from scratchllm.tokenizers.gpt2 import GPT2Tokenizer, gpt2_data_files, gpt2_encoding

__all__ = [
    "CharTokenizer",
    "GPT2Tokenizer",
    "Tokenizer",
    "build_tokenizer",
    "gpt2_data_files",
    "gpt2_encoding",
    "load_tokenizer",
    "normalize_spec",
    "tokenizer_from_dict",
    "tokenizer_names",
]
