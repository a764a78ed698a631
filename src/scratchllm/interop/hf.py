"""Hugging Face checkpoints in and out: GPT-2 (``GPT2LMHeadModel``) and Llama (``LlamaForCausalLM``) folders.

Both formats describe the same computation as our ``GPT``; they differ only in how the tensors are laid out, and
every difference is a fixed rearrangement (no arithmetic on the weights), which is why a round trip is exact:

- **Conv1D.** GPT-2's projections are ``Conv1D`` modules that compute ``x @ W + b`` with W stored as (in, out),
  the transpose of ``nn.Linear``'s (out, in). Every GPT-2 matrix inside a block is transposed on the way in and out.
- **Fused vs separate q, k, v.** GPT-2 already fuses them (``c_attn``: columns [q | k | v]), matching our
  ``attn.qkv``. Llama keeps ``q_proj``, ``k_proj``, ``v_proj`` apart (k and v have only ``num_key_value_heads``
  heads under GQA); we stack their rows into one matrix, so one matmul produces all three.
- **SwiGLU.** Llama's ``gate_proj`` and ``up_proj`` become the two halves [gate ; up] of our ``mlp.fc``.
- **Rotary layout.** RoPE can pair coordinates (2i, 2i+1) (the paper, Meta's original code) or (i, i + d/2)
  ("rotate_half", Hugging Face). We use rotate_half, so q and k rows need no permutation; a checkpoint converted
  from Meta's layout to Hugging Face's has already been permuted by its converter.
- **Tied heads.** With ``tie_word_embeddings`` the output head *is* the token embedding. safetensors refuses to
  store two names for one tensor, so transformers writes the embedding once, omits ``lm_head.weight`` and
  re-ties on load; we do the same in both directions.
- **Vocabulary padding.** Our embedding and head have ``padded_vocab_size`` rows (a multiple of 64); the extra
  rows are zeros on import and sliced off on export, so the files hold exactly ``vocab_size`` rows.

Only a local folder is read: nothing is downloaded, and transformers is not needed here (config.json is plain
JSON, tensors come from safetensors or ``torch.load(weights_only=True)``). Weights are cast to the model's float32.
``save_hf(model, path, tokenizer=tok)`` also writes the tokenizer files transformers' ``AutoTokenizer`` loads
(``hf_tokenizer.py``), plus our own copy that ``load_hf_tokenizer(path)`` reads back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from scratchllm import checkpoint
from scratchllm.errors import CheckpointError, ConfigError
from scratchllm.interop.hf_tokenizer import save_hf_tokenizer
from scratchllm.model import GPT, ModelConfig
from scratchllm.tokenizers import Tokenizer

# model_type → (architecture we read/write, prefix of the body's tensor names in the LM-head model)
_FORMATS: dict[str, tuple[str, str]] = {
    "gpt2": ("GPT2LMHeadModel", "transformer."),
    "llama": ("LlamaForCausalLM", "model."),
}
_SUPPORTED = "GPT2LMHeadModel (model_type gpt2) and LlamaForCausalLM (model_type llama)"
# Tensors some checkpoints carry that are not weights (causal-mask and RoPE-frequency buffers of old versions).
_IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias", ".rotary_emb.inv_freq")


# ----------------------------------------------------------------------------------------- the name table
@dataclass(frozen=True)
class TensorLink:
    """One of our tensors and the Hugging Face tensor(s) it is made of.

    Several ``theirs`` are stacked along dim 0 (their sizes in ``split``); ``transpose`` marks GPT-2's Conv1D;
    ``vocab`` marks a matrix whose rows we pad to ``padded_vocab_size``.
    """

    ours: str
    theirs: tuple[str, ...]
    split: tuple[int, ...] = ()
    transpose: bool = False
    vocab: bool = False


def _gpt2_links(cfg: ModelConfig) -> list[TensorLink]:
    links = [TensorLink("tok_emb.weight", ("wte.weight",), vocab=True), TensorLink("pos_emb.weight", ("wpe.weight",))]
    for i in range(cfg.n_layer):
        b, h = f"blocks.{i}.", f"h.{i}."
        for ours, theirs, conv1d in (
            ("norm1", "ln_1", False),
            ("attn.qkv", "attn.c_attn", True),
            ("attn.proj", "attn.c_proj", True),
            ("norm2", "ln_2", False),
            ("mlp.fc", "mlp.c_fc", True),
            ("mlp.proj", "mlp.c_proj", True),
        ):
            links.append(TensorLink(f"{b}{ours}.weight", (f"{h}{theirs}.weight",), transpose=conv1d))
            links.append(TensorLink(f"{b}{ours}.bias", (f"{h}{theirs}.bias",)))
    links += [TensorLink("norm_f.weight", ("ln_f.weight",)), TensorLink("norm_f.bias", ("ln_f.bias",))]
    if not cfg.tie_embeddings:
        links.append(TensorLink("lm_head.weight", ("lm_head.weight",), vocab=True))
    return links


def _llama_links(cfg: ModelConfig) -> list[TensorLink]:
    hd = cfg.head_dim
    qkv_split = (cfg.n_head * hd, cfg.n_kv_head * hd, cfg.n_kv_head * hd)
    fc_split = (cfg.mlp_hidden, cfg.mlp_hidden)
    params = ("weight", "bias") if cfg.bias else ("weight",)
    links = [TensorLink("tok_emb.weight", ("embed_tokens.weight",), vocab=True)]
    for i in range(cfg.n_layer):
        b, h = f"blocks.{i}.", f"layers.{i}."
        links.append(TensorLink(f"{b}norm1.weight", (f"{h}input_layernorm.weight",)))
        links.append(TensorLink(f"{b}norm2.weight", (f"{h}post_attention_layernorm.weight",)))
        for p in params:
            qkv = tuple(f"{h}self_attn.{n}_proj.{p}" for n in "qkv")
            links.append(TensorLink(f"{b}attn.qkv.{p}", qkv, split=qkv_split))
            links.append(TensorLink(f"{b}attn.proj.{p}", (f"{h}self_attn.o_proj.{p}",)))
            gate_up = (f"{h}mlp.gate_proj.{p}", f"{h}mlp.up_proj.{p}")
            links.append(TensorLink(f"{b}mlp.fc.{p}", gate_up, split=fc_split))
            links.append(TensorLink(f"{b}mlp.proj.{p}", (f"{h}mlp.down_proj.{p}",)))
    links.append(TensorLink("norm_f.weight", ("norm.weight",)))
    if not cfg.tie_embeddings:
        links.append(TensorLink("lm_head.weight", ("lm_head.weight",), vocab=True))
    return links


def tensor_links(model_type: str, cfg: ModelConfig) -> list[TensorLink]:
    """Every tensor of ``cfg``'s model and its Hugging Face source(s), for ``model_type`` gpt2 or llama (import,
    export and the PEFT adapter export share this one table)."""
    return _gpt2_links(cfg) if model_type == "gpt2" else _llama_links(cfg)


def hf_name(model_type: str, name: str) -> str:
    """The full transformers name of a tensor (``transformer.h.0…`` / ``model.layers.0…``; the head is top-level)."""
    return name if name.startswith("lm_head.") else _FORMATS[model_type][1] + name


# ------------------------------------------------------------------------------------------------ import
def load_hf(path: str | Path) -> GPT:
    """Build a ``GPT`` from a local transformers folder of a GPT-2 or Llama causal LM (returned in eval mode)."""
    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(
            f"no Hugging Face checkpoint folder at {folder}; pass a local folder with config.json and "
            f"model.safetensors or pytorch_model.bin (nothing is downloaded)"
        )
    hf = _read_json(folder / "config.json")
    model_type = _model_type(hf, folder)
    cfg = _gpt2_config(hf) if model_type == "gpt2" else _llama_config(hf)
    weights = _Weights(folder)
    prefix = _FORMATS[model_type][1]
    available = {name.removeprefix(prefix): name for name in weights.names()}

    model = GPT(cfg)
    params = dict(model.named_parameters())  # tied weights appear once, under tok_emb
    used: set[str] = set()
    with torch.no_grad():
        for link in tensor_links(model_type, cfg):
            parts = []
            for name in link.theirs:
                if name not in available:
                    raise CheckpointError(
                        f"{folder} has no tensor {hf_name(model_type, name)}; the checkpoint does not match its "
                        f"config.json ({_FORMATS[model_type][0]}, {cfg.n_layer} layers, bias={cfg.bias})"
                    )
                tensor = weights.get(available[name])
                parts.append(tensor.t() if link.transpose else tensor)
                used.add(available[name])
            value = torch.cat(parts, dim=0) if len(parts) > 1 else parts[0]
            target = params.pop(link.ours)
            rows = target[: cfg.vocab_size] if link.vocab else target
            if tuple(value.shape) != tuple(rows.shape):
                raise CheckpointError(
                    f"{folder}: {', '.join(link.theirs)} has shape {tuple(value.shape)}, config.json implies "
                    f"{tuple(rows.shape)}; the weights and config.json disagree"
                )
            if link.vocab:
                target.zero_()  # padding rows: never a target, never sampled
            rows.copy_(value)
    assert not params, f"internal: parameters without a source {sorted(params)}"
    leftover = sorted(
        n for n in weights.names() if n not in used and not n.endswith(_IGNORED_SUFFIXES) and n != "lm_head.weight"
    )
    if leftover:
        raise CheckpointError(
            f"{folder} holds tensors a {_FORMATS[model_type][0]} does not have ({', '.join(leftover[:5])}"
            f"{' …' if len(leftover) > 5 else ''}); only {_SUPPORTED} are supported"
        )
    return model.eval()


def _read_json(file: Path) -> dict[str, Any]:
    if not file.is_file():
        raise CheckpointError(f"{file} not found; a Hugging Face checkpoint folder needs its config.json")
    try:
        data = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{file} is not valid JSON ({err}); re-save the checkpoint") from err
    if not isinstance(data, dict):
        raise CheckpointError(f"{file} must hold a JSON object")
    return data


def _model_type(hf: dict[str, Any], folder: Path) -> str:
    model_type = hf.get("model_type")
    if model_type not in _FORMATS:
        raise CheckpointError(
            f"{folder}/config.json has model_type={model_type!r}; supported: {_SUPPORTED}"
        )
    expected = _FORMATS[model_type][0]
    architectures = hf.get("architectures") or [expected]
    if expected not in architectures:
        raise CheckpointError(
            f"{folder}/config.json has architectures={architectures}; supported: {_SUPPORTED}"
        )
    return model_type


def _gpt2_config(hf: dict[str, Any]) -> ModelConfig:
    act = hf.get("activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh"):
        raise ConfigError(
            f"GPT-2 config activation_function={act!r} is not supported; our MLP computes the tanh GELU "
            f"(gelu_new / gelu_pytorch_tanh)"
        )
    if not hf.get("scale_attn_weights", True) or hf.get("scale_attn_by_inverse_layer_idx", False):
        raise ConfigError(
            "GPT-2 config scale_attn_weights must be true and scale_attn_by_inverse_layer_idx false; "
            "our attention scales scores by 1/sqrt(head_dim) only"
        )
    n_embd = hf.get("n_embd", 768)
    return ModelConfig(
        vocab_size=hf.get("vocab_size", 50257),
        context_length=hf.get("n_positions", hf.get("n_ctx", 1024)),
        n_layer=hf.get("n_layer", 12),
        n_head=hf.get("n_head", 12),
        n_embd=n_embd,
        mlp_hidden=hf.get("n_inner") or 4 * n_embd,
        norm="layernorm",
        norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        mlp="gelu",
        position="learned",
        tie_embeddings=hf.get("tie_word_embeddings", True),
        bias=True,
        dropout=hf.get("resid_pdrop", 0.0),
        init_std=hf.get("initializer_range", 0.02),
        name=f"hf-gpt2-{n_embd}x{hf.get('n_layer', 12)}",
    )


def _llama_config(hf: dict[str, Any]) -> ModelConfig:
    hidden, n_head = hf.get("hidden_size", 4096), hf.get("num_attention_heads", 32)
    act = hf.get("hidden_act", "silu")
    if act != "silu":
        raise ConfigError(f"Llama config hidden_act={act!r} is not supported; SwiGLU here gates with silu")
    attention_bias, mlp_bias = bool(hf.get("attention_bias", False)), bool(hf.get("mlp_bias", False))
    if attention_bias != mlp_bias:
        raise ConfigError(
            f"Llama config attention_bias={attention_bias} but mlp_bias={mlp_bias}; our model.bias covers both, "
            f"so they must be equal"
        )
    # transformers < 5 writes rope_theta / rope_scaling at the top level, 5.x a rope_parameters dict.
    rope = hf.get("rope_parameters") or {}
    scaling = hf.get("rope_scaling")
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if scaling or rope_type != "default":
        field = "rope_scaling" if scaling else "rope_parameters.rope_type"
        raise ConfigError(
            f"Llama config {field}={scaling or rope_type!r} is not supported; only plain RoPE (no scaling) is"
        )
    head_dim = hf.get("head_dim")
    if head_dim is not None and head_dim * n_head != hidden:
        raise ConfigError(
            f"Llama config head_dim={head_dim} differs from hidden_size/num_attention_heads={hidden / n_head:g}; "
            f"our attention needs head_dim = hidden_size / num_attention_heads"
        )
    return ModelConfig(
        vocab_size=hf.get("vocab_size", 32000),
        context_length=hf.get("max_position_embeddings", 2048),
        n_layer=hf.get("num_hidden_layers", 32),
        n_head=n_head,
        n_kv_head=hf.get("num_key_value_heads") or n_head,
        n_embd=hidden,
        mlp_hidden=hf.get("intermediate_size", 11008),
        norm="rmsnorm",
        norm_eps=hf.get("rms_norm_eps", 1e-6),
        mlp="swiglu",
        position="rope",
        rope_theta=float(rope.get("rope_theta", hf.get("rope_theta", 10000.0))),
        tie_embeddings=hf.get("tie_word_embeddings", False),
        bias=attention_bias,
        dropout=hf.get("attention_dropout", 0.0),
        init_std=hf.get("initializer_range", 0.02),
        name=f"hf-llama-{hidden}x{hf.get('num_hidden_layers', 32)}",
    )


class _Weights:
    """Tensor names → tensors of one checkpoint folder, whichever of the four transformers layouts it uses.

    safetensors files are memory-mapped and read one tensor at a time; a ``.bin`` is unpickled with
    ``weights_only=True`` (no arbitrary code runs).
    """

    LAYOUTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")

    def __init__(self, folder: Path) -> None:
        self._where: dict[str, Path] = {}
        self._open: dict[Path, Any] = {}
        found = next((folder / name for name in self.LAYOUTS if (folder / name).is_file()), None)
        if found is None:
            raise CheckpointError(f"{folder} has no weights; expected one of: {', '.join(self.LAYOUTS)}")
        if found.name.endswith(".index.json"):
            weight_map = _read_json(found).get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise CheckpointError(f"{found} has no weight_map; re-save the checkpoint")
            self._where = {name: folder / shard for name, shard in weight_map.items()}
        else:
            self._where = {name: found for name in self._names_in(found)}
        missing = sorted({str(p.name) for p in self._where.values() if not p.is_file()})
        if missing:
            raise CheckpointError(f"{folder} is missing weight shard(s) {', '.join(missing)} listed in {found.name}")

    def _names_in(self, file: Path) -> Iterator[str]:
        return iter(self._handle(file).keys())

    def _handle(self, file: Path) -> Any:
        if file not in self._open:
            try:
                if file.suffix == ".safetensors":
                    self._open[file] = safe_open(str(file), framework="pt")
                else:
                    self._open[file] = checkpoint.load_weights_file(file)
            except Exception as err:  # corrupt or truncated files: say which one
                raise CheckpointError(f"cannot read {file} ({err}); the file is corrupt or not a checkpoint") from err
        return self._open[file]

    def names(self) -> list[str]:
        return list(self._where)

    def get(self, name: str) -> torch.Tensor:
        handle = self._handle(self._where[name])
        return handle.get_tensor(name) if hasattr(handle, "get_tensor") else handle[name]


# ------------------------------------------------------------------------------------------------ export
def save_hf(model: GPT, path: str | Path, tokenizer: Tokenizer | None = None) -> Path:
    """Write ``model`` as a transformers folder (config.json + model.safetensors) that
    ``AutoModelForCausalLM.from_pretrained`` loads: GPT-2-shaped models as GPT2LMHeadModel, Llama-shaped ones
    (rope + rmsnorm + swiglu) as LlamaForCausalLM. Returns the folder.

    With ``tokenizer`` (gpt2, a trained bpe, cl100k or char) the folder also gets the tokenizer files
    ``AutoTokenizer.from_pretrained`` loads (see ``hf_tokenizer.py``), and config.json names its end-of-text id."""
    cfg = model.config
    model_type = export_format(cfg)
    if tokenizer is not None and tokenizer.vocab_size > cfg.vocab_size:
        raise ConfigError(
            f"the tokenizer ({tokenizer.name}, {tokenizer.vocab_size} ids) emits ids the model "
            f"({cfg.vocab_size} ids) cannot read; pass the tokenizer the model was trained with"
        )
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    params = dict(model.named_parameters())
    tensors: dict[str, torch.Tensor] = {}
    for link in tensor_links(model_type, cfg):
        value = params[link.ours].detach()
        if link.vocab:
            value = value[: cfg.vocab_size]  # drop the padding rows
        parts = value.split(list(link.split), dim=0) if link.split else (value,)
        for name, part in zip(link.theirs, parts):
            part = part.t() if link.transpose else part
            # clone: safetensors rejects tensors that share storage (views of one fused matrix would).
            tensors[hf_name(model_type, name)] = part.to("cpu", torch.float32).clone().contiguous()
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    hf = _gpt2_hf_config(cfg) if model_type == "gpt2" else _llama_hf_config(cfg)
    if tokenizer is not None:
        # generate() stops at eos_token_id; without a tokenizer only GPT-2's vocabulary size tells us the id
        hf["bos_token_id"] = hf["eos_token_id"] = tokenizer.eot_id
        save_hf_tokenizer(tokenizer, folder, model_max_length=cfg.context_length)
    (folder / "config.json").write_text(json.dumps(hf, indent=2, sort_keys=True) + "\n")
    return folder


def export_format(cfg: ModelConfig) -> str:
    """Which format can express ``cfg`` (learned positions → GPT-2, rope → Llama), or a ConfigError listing every
    field that stands in the way and the value that would fix it."""
    if cfg.position == "learned":
        target = "GPT2LMHeadModel (position=learned)"
        wanted = {"norm": "layernorm", "mlp": "gelu", "bias": True, "n_kv_head": cfg.n_head}
        other = "or position=rope + norm=rmsnorm + mlp=swiglu for LlamaForCausalLM"
    else:
        target = "LlamaForCausalLM (position=rope)"
        wanted = {"norm": "rmsnorm", "mlp": "swiglu"}
        other = "or position=learned + norm=layernorm + mlp=gelu + bias=true for GPT2LMHeadModel"
    wrong = [f"model.{k}={getattr(cfg, k)} (needs {v})" for k, v in wanted.items() if getattr(cfg, k) != v]
    if wrong:
        raise ConfigError(f"cannot export to {target}: {'; '.join(wrong)}; {other}")
    return "gpt2" if cfg.position == "learned" else "llama"


def _gpt2_hf_config(cfg: ModelConfig) -> dict[str, Any]:
    eot = 50256 if cfg.vocab_size == 50257 else None  # GPT-2's <|endoftext|> serves as both
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.context_length,
        "n_embd": cfg.n_embd,
        "n_layer": cfg.n_layer,
        "n_head": cfg.n_head,
        "n_inner": cfg.mlp_hidden,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": cfg.norm_eps,
        "resid_pdrop": cfg.dropout,
        "embd_pdrop": cfg.dropout,
        "attn_pdrop": cfg.dropout,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "initializer_range": cfg.init_std,
        "tie_word_embeddings": cfg.tie_embeddings,
        "bos_token_id": eot,
        "eos_token_id": eot,
        "torch_dtype": "float32",
        "dtype": "float32",
    }


def _llama_hf_config(cfg: ModelConfig) -> dict[str, Any]:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "max_position_embeddings": cfg.context_length,
        "hidden_size": cfg.n_embd,
        "intermediate_size": cfg.mlp_hidden,
        "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head,
        "num_key_value_heads": cfg.n_kv_head,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "rms_norm_eps": cfg.norm_eps,
        # both spellings: transformers < 5 reads rope_theta, 5.x rope_parameters
        "rope_theta": cfg.rope_theta,
        "rope_scaling": None,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "attention_bias": cfg.bias,
        "mlp_bias": cfg.bias,
        "attention_dropout": cfg.dropout,
        "initializer_range": cfg.init_std,
        "tie_word_embeddings": cfg.tie_embeddings,
        "bos_token_id": None,
        "eos_token_id": None,
        "pad_token_id": None,
        "torch_dtype": "float32",
        "dtype": "float32",
    }
