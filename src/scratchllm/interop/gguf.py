"""Our GPT as a GGUF file, so llama.cpp (and the tools built on it) run it: ``export_gguf(model, tokenizer, path)``.

GGUF is one file: key/value metadata (architecture, shapes, the tokenizer) followed by named tensors. llama.cpp
knows a model family by ``general.architecture`` and finds each tensor by a fixed name, so an export is a name
table plus the few layout changes llama.cpp expects (its converter, ``convert_hf_to_gguf.py``, does the same for
Hugging Face checkpoints):

- **gpt2** (learned positions, LayerNorm, GELU, biases): ``token_embd``, ``position_embd``, then per block
  ``attn_norm``, ``attn_qkv`` (our fused [q | k | v] is exactly its layout), ``attn_output``, ``ffn_norm``,
  ``ffn_up``, ``ffn_down``; then ``output_norm`` and ``output``. Matrices keep ``nn.Linear``'s (out, in) layout (a
  Hugging Face GPT-2's Conv1D weights are transposed to that by the converter; ours already are).
- **llama** (RoPE, RMSNorm, SwiGLU, no biases): ``attn_q``/``attn_k``/``attn_v`` separately (our fused qkv is split;
  GQA gives k and v fewer rows), ``ffn_gate``/``ffn_up`` (the two halves of our ``mlp.fc``), ``ffn_down``. Rotary:
  we pair coordinates (i, i + d/2) ("rotate half", Hugging Face's layout); llama.cpp's llama rotates adjacent pairs
  (2i, 2i+1) (Meta's original), so q and k rows are permuted per head as the converter does (``_permute``).
- The head is written as ``output`` even when tied (llama.cpp's gpt2 loader needs it; it is a copy on disk).
- Vocabulary: the padding rows of our embedding and head are dropped (llama.cpp checks that the embedding has one
  row per token in the token list).
- **Tokenizer**: byte-level BPE as ``tokenizer.ggml.model = gpt2`` with the token strings and merges Hugging Face
  uses (``interop.hf_tokenizer``'s ``token_string`` / ``recover_merges``) and a pre-tokenizer llama.cpp knows by
  name: ``gpt-2`` for GPT-2's split pattern, ``llama-bpe`` for GPT-4's (= Llama 3's; our trained BPE's default).
  Special tokens are ``control`` tokens. A character tokenizer has no GGUF form llama.cpp can run: refused.

``dtype``: ``f32`` | ``f16`` | ``q8_0`` | ``q4_0`` for the matrices (quantized in Python by the ``gguf`` package; a
matrix whose rows are not a multiple of 32 falls back to f16, as llama.cpp's converter does); 1-D tensors (norms,
biases) are always f32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from scratchllm.errors import ConfigError
from scratchllm.model import GPT, ModelConfig
from scratchllm.tokenizers import TiktokenTokenizer, Tokenizer
from scratchllm.tokenizers.bpe import GPT4_PATTERN
from scratchllm.tokenizers.gpt2 import GPT2_PATTERN

DTYPES = ("f32", "f16", "q8_0", "q4_0")
_PRE = {GPT2_PATTERN: "gpt-2", GPT4_PATTERN: "llama-bpe"}  # split pattern -> llama.cpp's pre-tokenizer name


def gguf_architecture(cfg: ModelConfig) -> str:
    """``gpt2`` or ``llama``; any other mix of variants is refused with what to change."""
    gpt2 = dict(position="learned", norm="layernorm", mlp="gelu", bias=True)
    llama = dict(position="rope", norm="rmsnorm", mlp="swiglu", bias=False)
    for arch, want in (("gpt2", gpt2), ("llama", llama)):
        if all(getattr(cfg, k) == v for k, v in want.items()):
            if arch == "gpt2" and cfg.n_kv_head != cfg.n_head:
                raise ConfigError("GGUF's gpt2 architecture has no grouped KV heads (model.n_kv_head != n_head); "
                                  "export a model with n_kv_head=n_head or a Llama-shaped one")
            return arch
    raise ConfigError(
        f"GGUF export knows GPT-2-shaped (position=learned norm=layernorm mlp=gelu bias=true) and Llama-shaped "
        f"(position=rope norm=rmsnorm mlp=swiglu bias=false) models; this one has position={cfg.position} "
        f"norm={cfg.norm} mlp={cfg.mlp} bias={cfg.bias}: export it to Hugging Face instead (scratchllm.interop.hf)")


def _permute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """Rows of each head from the (i, i + d/2) rotary pairing to (2i, 2i+1): llama.cpp's converter's permute."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_tensors(model: GPT) -> Iterator[tuple[str, torch.Tensor]]:
    """(llama.cpp name, float32 tensor) for every tensor of the export, vocabulary padding dropped."""
    cfg = model.config
    arch = gguf_architecture(cfg)
    sd = {k: v.detach().float() for k, v in model.state_dict().items()}
    v = cfg.vocab_size
    yield "token_embd.weight", sd["tok_emb.weight"][:v]
    if arch == "gpt2":
        yield "position_embd.weight", sd["pos_emb.weight"]
    hd, nq, nkv = cfg.head_dim, cfg.n_head, cfg.n_kv_head
    for i in range(cfg.n_layer):
        b, g = f"blocks.{i}.", f"blk.{i}."
        if arch == "gpt2":
            pairs = [("norm1", "attn_norm"), ("attn.qkv", "attn_qkv"), ("attn.proj", "attn_output"),
                     ("norm2", "ffn_norm"), ("mlp.fc", "ffn_up"), ("mlp.proj", "ffn_down")]
            for ours, theirs in pairs:
                for part in ("weight", "bias"):
                    yield f"{g}{theirs}.{part}", sd[f"{b}{ours}.{part}"]
            continue
        q, k, val = sd[f"{b}attn.qkv.weight"].split([nq * hd, nkv * hd, nkv * hd])
        gate, up = sd[f"{b}mlp.fc.weight"].chunk(2)
        yield f"{g}attn_norm.weight", sd[f"{b}norm1.weight"]
        yield f"{g}attn_q.weight", _permute(q, nq)
        yield f"{g}attn_k.weight", _permute(k, nkv)
        yield f"{g}attn_v.weight", val
        yield f"{g}attn_output.weight", sd[f"{b}attn.proj.weight"]
        yield f"{g}ffn_norm.weight", sd[f"{b}norm2.weight"]
        yield f"{g}ffn_gate.weight", gate
        yield f"{g}ffn_up.weight", up
        yield f"{g}ffn_down.weight", sd[f"{b}mlp.proj.weight"]
    yield "output_norm.weight", sd["norm_f.weight"]
    if arch == "gpt2":
        yield "output_norm.bias", sd["norm_f.bias"]
    yield "output.weight", sd["lm_head.weight"][:v]


def _tokenizer_fields(tokenizer: Tokenizer | None, vocab_size: int) -> dict:
    if not isinstance(tokenizer, TiktokenTokenizer):
        what = "no tokenizer" if tokenizer is None else f"a {tokenizer.name} tokenizer"
        raise ConfigError(f"the model has {what}; GGUF carries byte-level BPE tokenizers only (gpt2, a trained "
                          f"bpe): train with tokenizer=gpt2 or tokenizer=bpe to export to GGUF")
    from scratchllm.interop.hf_tokenizer import _bpe_pattern, recover_merges, token_string

    pre = _PRE.get(_bpe_pattern(tokenizer))
    if pre is None:
        raise ConfigError(f"the {tokenizer.name} tokenizer's split pattern is neither GPT-2's nor GPT-4's; llama.cpp "
                          f"knows no pre-tokenizer for it: train the BPE with the default pattern")
    base = [tokenizer.token_bytes(i) for i in range(tokenizer.n_ranks)]
    tokens, types = [token_string(t) for t in base], [1] * len(base)  # 1 = normal
    by_id = {i: name for name, i in tokenizer.special_tokens.items()}
    for i in range(len(base), vocab_size):  # special tokens, then unused ids up to the model's vocabulary
        tokens.append(by_id.get(i, f"[PAD{i}]"))
        types.append(3 if i in by_id else 5)  # 3 = control, 5 = unused
    merges = [f"{token_string(a)} {token_string(b)}" for a, b in recover_merges(base)]
    return {"pre": pre, "tokens": tokens, "types": types, "merges": merges, "eot": tokenizer.eot_id}


def export_gguf(model: GPT, tokenizer: Tokenizer | None, path: str | Path, dtype: str = "f16",
                log=lambda line: None) -> Path:  # noqa: ANN001 - a progress callback
    """Write ``model`` and ``tokenizer`` to ``path`` as GGUF (module doc); returns the path."""
    import gguf

    if dtype not in DTYPES:
        raise ConfigError(f"dtype={dtype!r} is not a GGUF export type; choose one of: {', '.join(DTYPES)}")
    cfg = model.config
    arch = gguf_architecture(cfg)
    if type(model.tok_emb) is not torch.nn.Embedding:  # scratchllm.quantization's QuantizedEmbedding
        raise ConfigError("this model is quantized; export the float checkpoint it was made from to GGUF")
    tok = _tokenizer_fields(tokenizer, cfg.vocab_size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(cfg.name)
    writer.add_context_length(cfg.context_length)
    writer.add_embedding_length(cfg.n_embd)
    writer.add_feed_forward_length(cfg.mlp_hidden)
    writer.add_block_count(cfg.n_layer)
    writer.add_head_count(cfg.n_head)
    writer.add_head_count_kv(cfg.n_kv_head)
    if arch == "gpt2":
        writer.add_layer_norm_eps(cfg.norm_eps)
    else:
        writer.add_layer_norm_rms_eps(cfg.norm_eps)
        writer.add_rope_freq_base(cfg.rope_theta)
        writer.add_rope_dimension_count(cfg.head_dim)
        writer.add_vocab_size(cfg.vocab_size)
    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                 "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0, "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0}[dtype]
    writer.add_file_type(file_type)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(tok["pre"])
    writer.add_token_list(tok["tokens"])
    writer.add_token_types(tok["types"])
    writer.add_token_merges(tok["merges"])
    if tok["eot"] is not None:
        writer.add_bos_token_id(tok["eot"])
        writer.add_eos_token_id(tok["eot"])
    writer.add_add_bos_token(False)  # our models never saw a BOS in front of a prompt
    qtype = {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
             "q8_0": gguf.GGMLQuantizationType.Q8_0, "q4_0": gguf.GGMLQuantizationType.Q4_0}[dtype]
    for name, tensor in gguf_tensors(model):
        data = tensor.contiguous().numpy()
        if data.ndim == 1 or qtype == gguf.GGMLQuantizationType.F32:
            writer.add_tensor(name, data.astype(np.float32))
        elif qtype == gguf.GGMLQuantizationType.F16 or data.shape[-1] % 32:
            writer.add_tensor(name, data.astype(np.float16))
        else:
            writer.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
    log(f"writing {path}")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file(progress=False)
    writer.close()
    return path
