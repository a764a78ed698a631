"""SamplingConfig: one object, one set of defaults, shared by generate, stream, TextStream and the CLI's yaml."""

from __future__ import annotations

import dataclasses
import inspect
import json
from typing import Callable

import pytest
from omegaconf import OmegaConf

from scratchllm.errors import ConfigError
from scratchllm.generation import SamplingConfig, generate, stream
from scratchllm.generation.session import GenerateOptions
from scratchllm.generation.text import TextStream
from scratchllm.model import GPT
from scratchllm.paths import config_dir

PROMPT = [5, 17, 3, 42, 8]
SAMPLED = dict(temperature=1.3, top_k=20, top_p=0.95, min_p=0.01, repetition_penalty=1.2, seed=7)


# ------------------------------------------------------------------------------------ one set of defaults
def test_generate_yaml_spells_exactly_the_sampling_defaults() -> None:
    raw = OmegaConf.to_container(OmegaConf.load(config_dir() / "generate.yaml"))
    assert isinstance(raw, dict)
    defaults = SamplingConfig().to_dict()
    # every setting is a flat yaml key (so `key=value` works on the command line) with the same default
    assert {name: raw.get(name, "<missing>") for name in SamplingConfig.names()} == defaults
    assert GenerateOptions.from_mapping(raw).sampling == SamplingConfig()


def test_no_second_copy_of_the_settings() -> None:
    names = set(SamplingConfig.names())
    for fn in (generate, stream, TextStream):
        assert not names & set(inspect.signature(fn).parameters), fn  # they take a SamplingConfig (or keywords)
    assert not names & {f.name for f in dataclasses.fields(GenerateOptions)}


def test_flat_cli_keys_become_the_sampling_object() -> None:
    options = GenerateOptions.from_mapping(
        {"prompt": "ROMEO:", "max_new_tokens": 5, "temperature": 0.7, "top_k": 50, "seed": 3, "use_cache": False,
         "hydra": {"run": {"dir": "."}}}
    )
    assert options.sampling == SamplingConfig(temperature=0.7, top_k=50, seed=3, use_cache=False)
    assert options.prompt == "ROMEO:" and options.max_new_tokens == 5


def test_a_config_node_with_interpolations_is_read_like_a_dict() -> None:
    # the shape of train.yaml's end-of-run `sample:` node
    cfg = OmegaConf.create({"seed": 11, "sample": {"prompt": "\n", "max_new_tokens": 40, "temperature": 0.8,
                                                   "top_k": 40, "seed": "${seed}"}})
    assert SamplingConfig.from_mapping(cfg.sample) == SamplingConfig(temperature=0.8, top_k=40, seed=11)


# ------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "values, name",
    [
        (dict(temperature=-1.0), "temperature"),
        (dict(temperature="hot"), "temperature"),
        (dict(top_k=0), "top_k"),
        (dict(top_k=2.5), "top_k"),
        (dict(top_p=0.0), "top_p"),
        (dict(min_p=1.5), "min_p"),
        (dict(repetition_penalty=0), "repetition_penalty"),
        (dict(seed=1.5), "seed"),
        (dict(seed=True), "seed"),
        (dict(use_cache="yes"), "use_cache"),
        (dict(on_overflow="wrap"), "on_overflow"),
    ],
)
def test_bad_values_are_one_line_config_errors_wherever_they_come_from(values: dict, name: str) -> None:
    for build in (lambda: SamplingConfig(**values), lambda: SamplingConfig.from_mapping(values),
                  lambda: SamplingConfig().replace(**values), lambda: GenerateOptions.from_mapping(values)):
        with pytest.raises(ConfigError, match=name) as info:
            build()
        assert "\n" not in str(info.value)


def test_unknown_keywords_and_wrong_types_name_the_fix(tiny_model: Callable[..., GPT]) -> None:
    model = tiny_model()
    with pytest.raises(ConfigError, match="'temprature' is not a sampling setting; the settings are: temperature"):
        generate(model, PROMPT, 3, temprature=0.5)
    with pytest.raises(ConfigError, match="'temprature' is not a sampling setting"):
        stream(model, PROMPT, 3, temprature=0.5)  # eagerly, before the first token
    with pytest.raises(ConfigError, match="SamplingConfig.from_mapping"):
        generate(model, PROMPT, 3, sampling={"temperature": 0})  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- keywords = the object
def test_keyword_and_object_forms_draw_identical_tokens(tiny_model: Callable[..., GPT]) -> None:
    model = tiny_model()
    config = SamplingConfig(**SAMPLED)
    by_keywords = generate(model, PROMPT, 30, **SAMPLED)
    assert by_keywords == generate(model, PROMPT, 30, sampling=config)
    assert len(set(by_keywords)) > 3 and by_keywords != generate(model, PROMPT, 30, temperature=0)
    assert list(stream(model, PROMPT, 30, sampling=config)) == by_keywords
    batch = [PROMPT, PROMPT[:3]]
    assert generate(model, batch, 12, **SAMPLED) == generate(model, batch, 12, sampling=config)
    # a keyword next to the object changes that one field
    reseeded = generate(model, PROMPT, 30, sampling=config, seed=8)
    assert reseeded == generate(model, PROMPT, 30, **{**SAMPLED, "seed": 8}) and reseeded != by_keywords
    # nothing given = SamplingConfig()'s defaults
    assert generate(model, PROMPT, 30, seed=5) == generate(model, PROMPT, 30, sampling=SamplingConfig(seed=5))


# ------------------------------------------------------------------------------------------ as a value
def test_to_dict_round_trips_through_json_and_the_object_is_frozen() -> None:
    config = SamplingConfig(temperature=0.5, top_k=None, top_p=0.9, seed=3, use_cache=False, on_overflow="stop")
    values = json.loads(json.dumps(config.to_dict()))
    assert list(values) == list(SamplingConfig.names())
    assert SamplingConfig.from_mapping(values) == config
    assert SamplingConfig.from_mapping({"prompt": "x", "temperature": 0}) == SamplingConfig(temperature=0)
    assert config.replace() is config and config.replace(seed=4).seed == 4 and config.seed == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.temperature = 1.0  # type: ignore[misc]
