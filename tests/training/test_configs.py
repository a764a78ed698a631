"""Every config group option composes, and every model preset / experiment recipe builds a valid ModelConfig."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate

from scratchllm.model import ModelConfig
from scratchllm.paths import config_dir

MODELS = sorted(p.stem for p in (config_dir() / "model").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (config_dir() / "experiment").glob("*.yaml"))
PRECISIONS = sorted(p.stem for p in (config_dir() / "precision").glob("*.yaml"))
TRAINERS = sorted(p.stem for p in (config_dir() / "trainer").glob("*.yaml") if p.stem != "default")


def test_the_groups_the_readme_promises_exist():
    assert {"nano", "micro", "gpt2-124m", "gpt2-350m", "gpt2-774m", "gpt2-1.5b", "llama-1b", "llama-10b"} <= set(MODELS)
    assert {"shakespeare_char", "shakespeare_gpt2", "gpt2_124m", "tinyshakespeare_char",
            "tinyshakespeare_char_quick"} <= set(EXPERIMENTS)
    assert {"32-true", "bf16-mixed", "16-mixed", "bf16-true", "auto"} == set(PRECISIONS)
    assert {"cpu", "gpu", "ddp", "ddp_sim", "fsdp"} <= set(TRAINERS)


@pytest.mark.parametrize("name", MODELS)
def test_every_model_preset_composes(make_cfg, name):
    cfg = make_cfg(f"model={name}")
    mc = ModelConfig.from_dict(cfg.model)
    assert mc.name == name


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes(make_cfg, name):
    extra = ["data.path=/tmp/shards"] if name == "gpt2_124m" else []
    cfg = make_cfg(f"experiment={name}", *extra)
    ModelConfig.from_dict(cfg.model)
    assert cfg.trainer.max_steps > 0
    assert cfg.scheduler.total_steps == cfg.trainer.max_steps


@pytest.mark.parametrize("precision", PRECISIONS)
def test_precision_option_lands_on_the_trainer(make_cfg, precision):
    assert make_cfg(f"precision={precision}").trainer.precision == precision


def test_variant_overrides_reach_the_model(make_cfg):
    cfg = make_cfg("model.norm=rmsnorm", "model.position=rope", "model.mlp=swiglu", "model.n_kv_head=2")
    mc = ModelConfig.from_dict(cfg.model)
    assert (mc.norm, mc.position, mc.mlp, mc.n_kv_head) == ("rmsnorm", "rope", "swiglu", 2)


def test_cpu_trainer_instantiates(make_cfg):
    cfg = make_cfg("trainer=cpu", "precision=bf16-mixed", "trainer.max_steps=100")
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    assert trainer.max_steps == cfg.trainer.max_steps
    assert "bf16" in str(trainer.precision)


# The `data` node each data option composes to, as recorded before conf/data/ got its shared base
# (conf/data/_base/common.yaml, #12): the base changes how the files read, not what training receives.
_DATA_COMMON = {"_target_": "scratchllm.data.ShardDataModule", "tokenizer": "${tokenizer}", "batch_size": 32,
                "context_length": "${model.context_length}", "stride": None, "num_workers": 0, "seed": "${seed}",
                "cache_dir": "${paths.cache_dir}", "max_val_windows": 512}
COMPOSED_DATA = {
    "shakespeare": {**_DATA_COMMON, "corpus": {"_target_": "scratchllm.data.ShakespearePlays",
                                               "stage_directions": False, "val_plays": None}},
    "shards": {**_DATA_COMMON, "path": "???", "corpus": {"_target_": "scratchllm.data.ShardFolder",
                                                         "path": "${data.path}"}},
    "text_files": {**_DATA_COMMON, "path": "???", "corpus": {"_target_": "scratchllm.data.TextFiles",
                                                             "paths": "${data.path}", "val_fraction": 0.1,
                                                             "encoding": "utf-8"}},
    "tinyshakespeare": {**_DATA_COMMON, "path": "${paths.root_dir}/data/tinyshakespeare.txt",
                        "corpus": {"_target_": "scratchllm.data.TinyShakespeare", "path": "${data.path}"}},
}


def test_every_data_option_composes_to_the_recorded_node():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    for option in COMPOSED_DATA:
        GlobalHydra.instance().clear()
        with initialize_config_dir(str(config_dir()), version_base="1.3"):
            cfg = compose("train", overrides=[f"data={option}"])
        GlobalHydra.instance().clear()
        assert OmegaConf.to_container(cfg.data, resolve=False) == COMPOSED_DATA[option], option


def test_model_presets_say_only_what_differs():
    """conf/model/_base/fields.yaml is ModelConfig's defaults (one truth, checked here); each preset lists only the
    fields it changes, and composes to the full ModelConfig."""
    import dataclasses

    from omegaconf import OmegaConf

    base = OmegaConf.to_container(OmegaConf.load(config_dir() / "model" / "_base" / "fields.yaml"))
    defaults = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
    assert base == defaults
    for preset in sorted((config_dir() / "model").glob("*.yaml")):
        node = OmegaConf.to_container(OmegaConf.load(preset))
        fields = {k: v for k, v in node.items() if k != "defaults"}
        assert node["defaults"] == ["_base/fields@_here_", "_self_"], preset.name
        assert all(k == "name" or defaults[k] != v for k, v in fields.items()), preset.name


def test_presets_keep_their_published_sizes():
    from scratchllm.model import load_preset, param_report

    assert param_report(load_preset("gpt2-124m")).total == 124_439_808
    assert 1.0e9 < param_report(load_preset("llama-1b")).total < 1.03e9
