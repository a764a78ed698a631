"""GGUF export read back with the ``gguf`` package's own reader: names, shapes, types, metadata, and the values
(including Llama's rotary permutation, checked by what it must do: rotate the permuted rows as llama.cpp does)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from scratchllm.errors import ConfigError
from scratchllm.interop.gguf import export_gguf
from scratchllm.model import GPT, ModelConfig
from scratchllm.model.layers import apply_rope, rope_cos_sin
from scratchllm.tokenizers import BPETokenizer, CharTokenizer

gguf = pytest.importorskip("gguf")

TOKENS = [bytes([b]) for b in range(256)] + [b"th", b"the", b" the"]
GPT2_SHAPE = dict(vocab_size=260, context_length=32, n_layer=2, n_head=2, n_embd=64, mlp_hidden=128)
LLAMA_SHAPE = dict(GPT2_SHAPE, position="rope", norm="rmsnorm", mlp="swiglu", bias=False, tie_embeddings=False,
                   n_head=4, n_kv_head=2)


def bpe() -> BPETokenizer:
    return BPETokenizer(TOKENS)  # GPT-4's split pattern, <|endoftext|> = id 259


def export(shape: dict, tmp_path: Path, dtype: str = "f32", seed: int = 0) -> tuple[GPT, "gguf.GGUFReader"]:
    torch.manual_seed(seed)
    model = GPT(ModelConfig(**shape)).eval()
    path = export_gguf(model, bpe(), tmp_path / "m.gguf", dtype)
    return model, gguf.GGUFReader(str(path))


def field(reader: "gguf.GGUFReader", key: str):  # noqa: ANN201
    return reader.fields[key].contents()


def tensors(reader: "gguf.GGUFReader") -> dict:
    return {t.name: t for t in reader.tensors}


def as_torch(t) -> torch.Tensor:  # noqa: ANN001
    """A tensor of the file as (out, in) float32 (the reader's numpy arrays are already row-major (out, in))."""
    if t.tensor_type in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
        return torch.from_numpy(np.array(t.data, dtype=np.float32))
    return torch.from_numpy(gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32))


def test_gpt2_names_shapes_types_and_metadata(tmp_path: Path) -> None:
    model, reader = export(GPT2_SHAPE, tmp_path, "f16")
    assert field(reader, "general.architecture") == "gpt2"
    assert field(reader, "gpt2.context_length") == 32 and field(reader, "gpt2.block_count") == 2
    assert field(reader, "gpt2.embedding_length") == 64 and field(reader, "gpt2.feed_forward_length") == 128
    assert field(reader, "gpt2.attention.head_count") == 2
    assert field(reader, "tokenizer.ggml.model") == "gpt2" and field(reader, "tokenizer.ggml.pre") == "llama-bpe"
    tokens = field(reader, "tokenizer.ggml.tokens")
    assert len(tokens) == 260 and tokens[32] == "Ġ" and tokens[258] == "Ġthe" and tokens[259] == "<|endoftext|>"
    assert field(reader, "tokenizer.ggml.merges") == ["t h", "th e", "Ġ the"]
    assert field(reader, "tokenizer.ggml.token_type")[259] == 3 and field(reader, "tokenizer.ggml.eos_token_id") == 259
    ts = tensors(reader)
    expected = {"token_embd.weight", "position_embd.weight", "output_norm.weight", "output_norm.bias", "output.weight"}
    for i in range(2):
        expected |= {f"blk.{i}.{n}.{p}" for n in ("attn_norm", "attn_qkv", "attn_output", "ffn_norm", "ffn_up",
                                                   "ffn_down") for p in ("weight", "bias")}
    assert set(ts) == expected
    assert list(ts["token_embd.weight"].shape) == [64, 260]  # GGUF lists ne: (in, out); padding rows dropped
    assert list(ts["blk.0.attn_qkv.weight"].shape) == [64, 192] and list(ts["blk.0.ffn_down.weight"].shape) == [128, 64]
    assert ts["blk.0.attn_qkv.weight"].tensor_type == gguf.GGMLQuantizationType.F16
    assert ts["blk.0.attn_qkv.bias"].tensor_type == gguf.GGMLQuantizationType.F32
    torch.testing.assert_close(as_torch(ts["blk.1.ffn_up.weight"]),
                               model.blocks[1].mlp.fc.weight.detach(), atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(as_torch(ts["output.weight"]), model.lm_head.weight.detach()[:260], atol=1e-3,
                               rtol=1e-3)


def test_llama_split_and_rotary_permutation(tmp_path: Path) -> None:
    model, reader = export(LLAMA_SHAPE, tmp_path, "f32")
    assert field(reader, "general.architecture") == "llama"
    assert field(reader, "llama.attention.head_count_kv") == 2 and field(reader, "llama.rope.dimension_count") == 16
    ts = tensors(reader)
    assert not any("bias" in n or "position" in n for n in ts)
    blk = model.blocks[0]
    hd = 16
    q, k, v = blk.attn.qkv.weight.detach().split([4 * hd, 2 * hd, 2 * hd])
    gate, up = blk.mlp.fc.weight.detach().chunk(2)
    torch.testing.assert_close(as_torch(ts["blk.0.attn_v.weight"]), v)
    torch.testing.assert_close(as_torch(ts["blk.0.ffn_gate.weight"]), gate)
    torch.testing.assert_close(as_torch(ts["blk.0.ffn_up.weight"]), up)
    # What the permutation is for: llama.cpp rotates pairs (2i, 2i+1) by position·θ_i; we rotate (i, i + d/2).
    # Rotating the exported rows its way must give our rotated vectors, in its order, for every head.
    x, pos = torch.randn(5, 64), torch.arange(5)
    cos, sin = rope_cos_sin(pos, hd, model.config.rope_theta, torch.float32)
    for name, ours, heads in (("attn_q", q, 4), ("attn_k", k, 2)):
        mine = apply_rope((x @ ours.T).view(5, heads, hd).transpose(0, 1), cos, sin)  # (heads, T, hd)
        theirs = (x @ as_torch(ts[f"blk.0.{name}.weight"]).T).view(5, heads, hd).transpose(0, 1)
        a, b = theirs[..., 0::2], theirs[..., 1::2]
        c, s = cos[:, : hd // 2], sin[:, : hd // 2]
        rotated = torch.stack((a * c - b * s, a * s + b * c), dim=-1).flatten(-2)  # interleaved rotary
        interleaved_mine = torch.stack((mine[..., : hd // 2], mine[..., hd // 2 :]), dim=-1).flatten(-2)
        torch.testing.assert_close(rotated, interleaved_mine, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype, qtype, tol", [("q8_0", "Q8_0", 0.01), ("q4_0", "Q4_0", 0.15)])
def test_quantized_types_dequantize_close(tmp_path: Path, dtype: str, qtype: str, tol: float) -> None:
    model, reader = export(GPT2_SHAPE, tmp_path, dtype)
    t = tensors(reader)["blk.0.attn_qkv.weight"]
    assert t.tensor_type == getattr(gguf.GGMLQuantizationType, qtype)
    w = model.blocks[0].attn.qkv.weight.detach()
    assert (as_torch(t).view_as(w) - w).norm() < tol * w.norm()


def test_what_gguf_cannot_carry_is_refused(tmp_path: Path) -> None:
    torch.manual_seed(0)
    with pytest.raises(ConfigError, match="GGUF carries byte-level BPE tokenizers only"):
        export_gguf(GPT(ModelConfig(**dict(GPT2_SHAPE, vocab_size=30))), CharTokenizer(list("abc")), tmp_path / "c.gguf")
    mixed = GPT(ModelConfig(**dict(GPT2_SHAPE, norm="rmsnorm")))
    with pytest.raises(ConfigError, match="knows GPT-2-shaped .* and Llama-shaped"):
        export_gguf(mixed, bpe(), tmp_path / "m.gguf")
    with pytest.raises(ConfigError, match="choose one of: f32, f16, q8_0, q4_0"):
        export_gguf(GPT(ModelConfig(**GPT2_SHAPE)), bpe(), tmp_path / "m.gguf", "q2_k")
    from scratchllm.quantization import QuantConfig, quantize_model

    quantized = GPT(ModelConfig(**GPT2_SHAPE))
    quantize_model(quantized, QuantConfig("int8"))
    with pytest.raises(ConfigError, match="this model is quantized; export the float checkpoint"):
        export_gguf(quantized, bpe(), tmp_path / "m.gguf")
    assert not list(tmp_path.iterdir())  # nothing half-written


@pytest.mark.slow
def test_export_command(tmp_path: Path) -> None:
    from scratchllm import checkpoint

    torch.manual_seed(0)
    model = GPT(ModelConfig(**GPT2_SHAPE, name="tiny-bpe"))
    ckpt = {"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}
    checkpoint.stamp(ckpt, checkpoint.CheckpointMeta(format=checkpoint.FORMAT, model=model.config.to_dict(),
                                                     tokenizer=bpe().to_dict()))
    checkpoint.save(ckpt, tmp_path / "m.ckpt")
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "scratchllm.export", "format=gguf", "ckpt_path=m.ckpt"]
    proc = subprocess.run([*cmd, "output=model.gguf", "dtype=q8_0"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "wrote model.gguf" in proc.stderr and sorted(p.name for p in tmp_path.iterdir()) == ["m.ckpt", "model.gguf"]
    assert field(gguf.GGUFReader(str(tmp_path / "model.gguf")), "general.name") == "tiny-bpe"
    proc = subprocess.run([*cmd, "output=x.gguf", "dtype=q3"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error: dtype=q3 is not a GGUF")


@pytest.mark.slow
@pytest.mark.parametrize("shape, tokenizer, message", [
    (dict(GPT2_SHAPE, norm="rmsnorm"), "bpe", "error: GGUF export knows GPT-2-shaped"),
    (dict(GPT2_SHAPE, vocab_size=30), "char", "error: the model has a char tokenizer; GGUF carries byte-level BPE"),
], ids=["variant", "char-tokenizer"])
def test_export_command_refuses_what_gguf_cannot_express(tmp_path: Path, shape: dict, tokenizer: str,
                                                         message: str) -> None:
    """What a user can type: one line naming the fix, exit 2, no file written."""
    from scratchllm import checkpoint

    torch.manual_seed(0)
    model = GPT(ModelConfig(**shape))
    tok = bpe() if tokenizer == "bpe" else CharTokenizer(list("abc"))
    ckpt = {"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}
    checkpoint.stamp(ckpt, checkpoint.CheckpointMeta(format=checkpoint.FORMAT, model=model.config.to_dict(),
                                                     tokenizer=tok.to_dict()))
    checkpoint.save(ckpt, tmp_path / "m.ckpt")
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "scratchllm.export", "format=gguf", "ckpt_path=m.ckpt",
                           "output=model.gguf"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(message), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not (tmp_path / "model.gguf").exists()
