"""precision=auto / compile=auto / model.attention=auto: the rules, fed other machines' facts."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from scratchllm.model import ModelConfig
from scratchllm.training import auto

AMX = frozenset({"avx512f", "amx_bf16", "amx_tile"})
OLD = frozenset({"avx2", "fma"})
CXX = ("/usr/bin/c++", "C++ compiler /usr/bin/c++")
NO_CXX = (None, "no C++ compiler (c++, g++ or clang++) on PATH; torch.compile needs one")


@pytest.mark.parametrize("kind, facts, expected", [
    ("cpu", {"flags": AMX}, "bf16-mixed"),
    ("cpu", {"flags": frozenset({"avx512_bf16"})}, "bf16-mixed"),
    ("cpu", {"flags": OLD}, "32-true"),
    ("cuda", {"capability": (8, 0)}, "bf16-mixed"),
    ("cuda", {"capability": (9, 0)}, "bf16-mixed"),
    ("cuda", {"capability": (7, 5)}, "32-true"),
])
def test_precision_auto_follows_native_bf16(kind, facts, expected):
    decision = auto.decide_precision("auto", kind, **facts)
    assert decision.value == expected and decision.reason


def test_explicit_precision_is_kept():
    assert auto.decide_precision("16-mixed", "cpu", flags=OLD).value == "16-mixed"


def test_compile_auto_needs_a_compiler_and_a_long_run():
    assert auto.decide_compile("auto", "cpu", 3000, 1000, compiler=CXX).value is True
    short = auto.decide_compile("auto", "cpu", 20, 1000, compiler=CXX)
    assert short.value is False and "compile_min_steps" in short.reason
    none = auto.decide_compile("auto", "cpu", 3000, 1000, compiler=NO_CXX)
    assert none.value is False and "no C++ compiler" in none.reason and "eager" in none.reason
    # compile=true on a machine without a compiler runs eager with the reason instead of an Inductor traceback
    forced = auto.decide_compile(True, "cpu", 5, 1000, compiler=NO_CXX)
    assert forced.value is False and "compile=true" in forced.reason
    assert auto.decide_compile(False, "cpu", 5000, 1000, compiler=CXX).value is False


def test_compiler_probe_reports_a_missing_compiler(monkeypatch):
    auto.cxx_compiler.cache_clear()
    path, why = auto.cxx_compiler("definitely-not-a-compiler-xyz")
    assert path is None and "definitely-not-a-compiler-xyz" in why


@pytest.mark.parametrize("kind, compiled, expected", [
    ("cpu", True, "explicit"), ("cpu", False, "sdpa"), ("cuda", True, "sdpa"), ("cuda", False, "sdpa"),
])
def test_attention_auto(kind, compiled, expected):
    assert auto.decide_attention("auto", kind, compiled).value == expected
    assert auto.decide_attention("sdpa", kind, compiled).value == "sdpa"


def test_resolve_rewrites_the_config_so_no_auto_is_left(monkeypatch):
    monkeypatch.setattr(auto, "cxx_compiler", lambda env=None: CXX)
    monkeypatch.setattr(auto, "cpu_flags", lambda: AMX)
    cfg = OmegaConf.create({"trainer": {"accelerator": "cpu", "precision": "auto", "max_steps": 3000},
                            "compile": "auto", "compile_min_steps": 1000, "model": {"attention": "auto"}})
    decisions = auto.resolve(cfg)
    assert [d.value for d in decisions] == ["bf16-mixed", True, "explicit"]
    assert "auto" not in OmegaConf.to_yaml(cfg)
    assert all(d.line().startswith(d.name + "=") for d in decisions)


def test_model_config_outside_training_reads_auto_as_sdpa():
    assert ModelConfig(attention="auto", vocab_size=65, n_layer=1, n_head=1, n_embd=8).attention == "sdpa"


def test_train_prints_and_records_the_choices(tmp_path):
    """The command as a user types it: each auto choice printed with its reason and recorded in result.json."""
    import json
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "scratchllm.train", "precision=auto", "compile=auto", "model.attention=auto",
         "trainer.max_steps=3", "sample.max_new_tokens=0", "threads=1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("fast path: ")]
    assert [line.split("=")[0] for line in lines] == ["fast path: precision", "fast path: compile",
                                                      "fast path: model.attention"]
    assert "compile=False: 3 steps < compile_min_steps" in proc.stderr
    result = json.loads(next(tmp_path.glob("logs/train/runs/*/result.json")).read_text())
    assert result["fast_path"]["compile"] is False and result["fast_path"]["model.attention"] == "sdpa"
    assert result["fast_path"]["precision"] in ("bf16-mixed", "32-true")
