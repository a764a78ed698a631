"""Mistyped overrides get one line naming the right fix (scratchllm.overrides), checked the way the entry points
check them: composing the real conf/ before Hydra runs."""

from __future__ import annotations

import pytest

from scratchllm.overrides import OverrideError, check_overrides
from scratchllm.paths import config_dir
from tests.training.conftest import run_cli


def _error(config: str, *argv: str) -> str:
    with pytest.raises(OverrideError) as info:
        check_overrides(str(config_dir()), config, list(argv))
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("argv", "fix"),
    [
        (["trainer.max_step=50"], "did you mean trainer.max_steps=50?"),
        (["data.batchsize=8"], "did you mean data.batch_size=8?"),
        (["modle=micro"], "did you mean model=micro?"),
        (["model.n_layers=3"], "did you mean model.n_layer=3?"),
        (["model=mirco"], "did you mean model=micro?"),
        # following Hydra's own hint (+key) used to end in a Trainer traceback
        (["+trainer.max_step=50"], "takes no argument 'max_step'; did you mean trainer.max_steps=50?"),
        # the default corpus is packaged: a path needs a corpus that reads one
        (["data.path=books/"], "choose an option that reads it (data=shards, data=text_files, data=tinyshakespeare)"),
        (["+data.path=books/"], "data.path is not a setting of data=shakespeare"),
        (["trainer.max_steps=abc"], "trainer.max_steps=abc: expected an integer or auto (default auto)"),
        # an interpolation of an auto setting is checked against the kind the setting stands for (no TypeError later)
        (["scheduler.total_steps=abc"], "scheduler.total_steps=abc: expected an integer (default ${trainer.max_steps})"),
        (["optim.lr=fast"], "optim.lr=fast: expected a number"),
        (["compile=maybe"], "compile=maybe: expected true or false"),
        (["data=text_files"], "data.path must be set (needed by data=text_files)"),
        (["tokenizer=bpe"], "tokenizer.path must be set (needed by tokenizer=bpe)"),
        (["tokenizer=tokenizers/my-32k"], "e.g. tokenizer=bpe tokenizer.path=tokenizers/my-32k"),
        (["tokenizer=null"], "leave the override out to keep the default"),
        (["prompt=naïve"], None),  # not a train key: the quoting hint comes first anyway
        (["-m", "model.norm=layernorm,rmsnorm", "trainer.max_step=5"], "did you mean trainer.max_steps=5?"),
        (["-m", "model=nano,mirco"], "did you mean model=micro?"),  # every value of a sweep is checked
    ],
)
def test_train_override_mistakes_name_the_fix(argv, fix):
    message = _error("train", *argv)
    if fix is not None:
        assert fix in message, message


def test_missing_sweeper_plugin_names_the_install():
    try:
        import hydra_plugins.hydra_optuna_sweeper  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("the optuna extra is installed here")
    assert "pip install hydra-optuna-sweeper" in _error("train", "-m", "hparams_search=optuna")


def test_generate_and_prepare_keys_are_checked_too():
    assert "did you mean prompt=Hi?" in _error("generate", "promt=Hi")
    assert "did you mean max_new_tokens=5?" in _error("generate", "max_new_token=5")
    assert "input must be set" in _error("prepare")


def test_unquoted_non_ascii_value_gets_the_quoting_hint():
    message = _error("generate", "prompt=naïve")
    assert "quote the value" in message and "'prompt=\"naïve\"'" in message


def test_good_overrides_pass():
    check_overrides(str(config_dir()), "train", ["model=micro", "model.norm=rmsnorm", "trainer.max_steps=5",
                                                  "optim.lr=1", "data=text_files", "data.path=x.txt"])
    check_overrides(str(config_dir()), "train", ["-m", "model.norm=layernorm,rmsnorm",
                                                  "model.position=learned,rope"])
    check_overrides(str(config_dir()), "generate", ["tokenizer=gpt2", "prompt='naïve, or not'"])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-m", "scratchllm.train", "trainer.max_step=50"], "did you mean trainer.max_steps=50?"),
        (["-m", "scratchllm.train", "+trainer.max_step=50"], "did you mean trainer.max_steps=50?"),
        (["-m", "scratchllm.train", "trainer.max_steps=abc"], "expected an integer"),
        (["-m", "scratchllm.train", "data.path=corpus.txt"], "data=text_files"),
        (["-m", "scratchllm.generate", "prompt=naïve"], "quote the value"),
    ],
)
def test_entry_points_print_one_line_and_exit_2(tmp_path, args, expected):
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], proc.stderr
