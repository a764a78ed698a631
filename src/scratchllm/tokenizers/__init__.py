"""Tokenizers behind one interface: ``char`` (fitted on the training text), ``gpt2`` (tiktoken, offline),
``bpe`` (a byte-level BPE trained on your corpus, see ``train_bpe.py``) and, where its file is installed,
``cl100k`` (GPT-4's).

    from scratchllm.tokenizers import build_tokenizer
    tok = build_tokenizer("gpt2")                                  # or "tokenizers/my-bpe" (a trained folder)
    tok.decode(tok.encode("Who's there?"))
    tok.add_special_tokens(["<|im_start|>", "<|im_end|>"])         # -> {"<|im_start|>": 50257, ...}
    tok.encode("<|im_start|>user", allowed_special="all")          # the marker's id only when asked for

``base.py`` is the interface (it imports no tokenizer); ``factory.py`` builds and loads every concrete one.
"""

from scratchllm.tokenizers.base import ENDOFTEXT, HF_EXPORT_FILE, Tokenizer
from scratchllm.tokenizers.bpe import GPT4_PATTERN, BPETokenizer, is_bpe_dir
from scratchllm.tokenizers.char import CharTokenizer
from scratchllm.tokenizers.cl100k import Cl100kTokenizer, cl100k_encoding, find_cl100k_file
from scratchllm.tokenizers.factory import (
    build_tokenizer,
    load_tokenizer,
    normalize_spec,
    tokenizer_from_dict,
    tokenizer_names,
)
from scratchllm.tokenizers.gpt2 import GPT2Tokenizer, gpt2_data_files, gpt2_encoding
from scratchllm.tokenizers.tiktoken_base import TiktokenTokenizer
from scratchllm.tokenizers.train_bpe import BPETrainConfig, train_bpe, train_bpe_files

__all__ = [
    "ENDOFTEXT",
    "GPT4_PATTERN",
    "HF_EXPORT_FILE",
    "BPETokenizer",
    "BPETrainConfig",
    "CharTokenizer",
    "Cl100kTokenizer",
    "GPT2Tokenizer",
    "TiktokenTokenizer",
    "Tokenizer",
    "build_tokenizer",
    "cl100k_encoding",
    "find_cl100k_file",
    "gpt2_data_files",
    "gpt2_encoding",
    "is_bpe_dir",
    "load_tokenizer",
    "normalize_spec",
    "tokenizer_from_dict",
    "tokenizer_names",
    "train_bpe",
    "train_bpe_files",
]
