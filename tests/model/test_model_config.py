"""ModelConfig: invalid values fail at construction with the valid choices named; it round-trips losslessly."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from scratchllm.errors import ConfigError
from scratchllm.model import ModelConfig, load_preset, preset_names


def test_n_embd_not_divisible_by_n_head(tiny) -> None:
    with pytest.raises(ConfigError, match=r"n_embd=32 is not divisible by model\.n_head=5") as info:
        tiny(n_head=5)
    assert "1, 2, 4, 8, 16, 32" in str(info.value)  # the divisors to choose from


def test_n_head_not_divisible_by_n_kv_head(tiny) -> None:
    with pytest.raises(ConfigError, match=r"n_head=4 is not divisible by model\.n_kv_head=3") as info:
        tiny(n_kv_head=3)
    assert "1, 2, 4" in str(info.value) and "MQA" in str(info.value)


@pytest.mark.parametrize(
    "field,bad,choices",
    [
        ("attention", "flash", ["sdpa", "explicit"]),
        ("norm", "batchnorm", ["layernorm", "rmsnorm"]),
        ("mlp", "relu", ["gelu", "swiglu"]),
        ("position", "alibi", ["learned", "rope"]),
    ],
)
def test_unknown_variant_names_list_the_choices(tiny, field: str, bad: str, choices: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        tiny(**{field: bad})
    message = str(info.value)
    assert f"model.{field}={bad!r}" in message
    assert all(choice in message for choice in choices)
    assert "\n" not in message


def test_unknown_field_in_from_dict_lists_valid_fields(tiny) -> None:
    data = {**tiny().to_dict(), "n_layers": 3}
    with pytest.raises(ConfigError, match="unknown model field.*n_layers") as info:
        ModelConfig.from_dict(data)
    assert "n_layer" in str(info.value).split("valid fields:")[1]


def test_hydra_target_key_is_accepted(tiny) -> None:
    data = {**tiny().to_dict(), "_target_": "scratchllm.model.ModelConfig"}
    assert ModelConfig.from_dict(data) == tiny()


@pytest.mark.parametrize(
    "overrides,match",
    [
        (dict(n_layer=0), "n_layer must be a positive integer"),
        (dict(vocab_size=-5), "vocab_size must be a positive integer"),
        (dict(context_length=2.5), "context_length must be a positive integer"),
        (dict(n_embd=True), "n_embd must be a positive integer"),
        (dict(dropout=1.0), "dropout"),
        (dict(dropout=-0.1), "dropout"),
        (dict(init_std=0.0), "init_std"),
        (dict(n_embd=36, n_head=4, position="rope"), "even head size"),  # head_dim 9
    ],
)
def test_other_invalid_values(tiny, overrides: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        tiny(**overrides)


def test_config_error_is_raised_by_replace_too(tiny) -> None:
    with pytest.raises(ConfigError):
        tiny().replace(n_kv_head=3)


def test_defaults_are_resolved(tiny) -> None:
    cfg = ModelConfig(vocab_size=65, n_layer=1, n_head=4, n_embd=96)
    assert cfg.n_kv_head == 4 and cfg.mlp_hidden == 384
    swiglu = ModelConfig(vocab_size=65, n_layer=1, n_head=4, n_embd=96, mlp="swiglu")
    assert swiglu.mlp_hidden == 256  # 8/3·96 = 256 exactly
    assert ModelConfig(n_embd=2048, n_head=16, mlp="swiglu").mlp_hidden == 5632  # Llama's rule, 5461 → 5632


@pytest.mark.parametrize("vocab", [1, 63, 64, 65, 127, 128, 32000, 50257, 50304])
def test_padded_vocab_size(tiny, vocab: int) -> None:
    cfg = tiny(vocab_size=vocab)
    assert cfg.padded_vocab_size % 64 == 0
    assert vocab <= cfg.padded_vocab_size < vocab + 64
    assert tiny(vocab_size=50257).padded_vocab_size == 50304


def _variety(tiny) -> list[ModelConfig]:
    return [
        tiny(),
        tiny(attention="explicit", position="rope", norm="rmsnorm", mlp="swiglu", n_kv_head=1, bias=False,
             tie_embeddings=False, dropout=0.1, norm_eps=1e-6, rope_theta=500000.0, init_std=0.01, name="odd"),
        *[load_preset(n) for n in preset_names()],
    ]


def test_round_trip_through_dict(tiny) -> None:
    for cfg in _variety(tiny):
        back = ModelConfig.from_dict(cfg.to_dict())
        assert back == cfg and back.to_dict() == cfg.to_dict()  # to_dict also compares ``name``


def test_round_trip_through_yaml(tiny, tmp_path: Path) -> None:
    for i, cfg in enumerate(_variety(tiny)):
        text = OmegaConf.to_yaml(OmegaConf.create(cfg.to_dict()))
        from_text = ModelConfig.from_dict(OmegaConf.to_container(OmegaConf.create(text)))
        path = tmp_path / f"cfg{i}.yaml"
        OmegaConf.save(OmegaConf.create(cfg.to_dict()), path)
        from_file = ModelConfig.from_dict(OmegaConf.to_container(OmegaConf.load(path)))
        for back in (from_text, from_file):
            assert back.to_dict() == cfg.to_dict()
            assert {k: type(v) for k, v in back.to_dict().items()} == {k: type(v) for k, v in cfg.to_dict().items()}


def test_from_dict_accepts_a_dictconfig(tiny) -> None:
    """Hydra hands over DictConfig objects, not dicts."""
    cfg = tiny(position="rope")
    assert ModelConfig.from_dict(OmegaConf.create(cfg.to_dict())) == cfg
