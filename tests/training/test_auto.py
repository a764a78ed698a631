"""precision=auto / compile=auto / model.attention=auto: the rules, fed other machines' facts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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


def test_compile_auto_needs_a_compiler_and_a_long_run(monkeypatch):
    monkeypatch.setattr(auto, "cpu_flags", lambda: AMX)
    assert auto.decide_compile("auto", "cpu", 3000, 1000, compiler=CXX).value is True
    short = auto.decide_compile("auto", "cpu", 20, 1000, compiler=CXX)
    assert short.value is False and "compile_min_steps" in short.reason
    none = auto.decide_compile("auto", "cpu", 3000, 1000, compiler=NO_CXX)
    assert none.value is False and "no C++ compiler" in none.reason and "eager" in none.reason
    # compile=true on a machine without a compiler runs eager with the reason instead of an Inductor traceback
    forced = auto.decide_compile(True, "cpu", 5, 1000, compiler=NO_CXX)
    assert forced.value is False and "compile=true" in forced.reason
    assert auto.decide_compile(False, "cpu", 5000, 1000, compiler=CXX).value is False


def test_compile_auto_stays_eager_for_fp32_on_cpu(monkeypatch):
    """fp32 on CPU: the matmuls already run near the fp32 ceiling; compiling measured 0.98-1.09x (not paid back)."""
    monkeypatch.setattr(auto, "cpu_flags", lambda: OLD)
    emulated = auto.decide_compile("auto", "cpu", 3000, 1000, compiler=CXX, precision="bf16-mixed")
    assert emulated.value is False, "bf16 named on a CPU without native bf16: emulated matmuls, no compile"
    monkeypatch.setattr(auto, "cpu_flags", lambda: AMX)
    fp32 = auto.decide_compile("auto", "cpu", 3000, 1000, compiler=CXX, precision="32-true")
    assert fp32.value is False and "precision=32-true" in fp32.reason and "eager" in fp32.reason
    assert auto.decide_compile("auto", "cpu", 3000, 1000, compiler=CXX, precision="bf16-mixed").value is True
    assert auto.decide_compile("auto", "cuda", 3000, 1000, compiler=CXX, precision="32-true").value is True
    assert auto.decide_compile(True, "cpu", 3000, 1000, compiler=CXX, precision="32-true").value is True


@pytest.mark.parametrize("requested, compiled, expected", [
    ("auto", True, auto.FAST_STEPS), ("auto", False, auto.SLOW_STEPS), (700, True, 700), (700, False, 700),
])
def test_steps_auto_follows_the_path(requested, compiled, expected):
    decision = auto.decide_steps(requested, compiled)
    assert decision.value == expected and decision.name == "trainer.max_steps"


def test_steps_auto_keeps_a_resumed_runs_length(monkeypatch):
    """A resumed run's `auto` is the length its checkpoint was trained towards, whatever this machine would pick
    (a 3,000-step AMX run resumed on an AVX2 machine must not stop at 1,500, nor its schedule jump)."""
    decision = auto.decide_steps("auto", False, resumed=3000)
    assert decision.value == 3000 and "resumed" in decision.reason
    assert auto.decide_steps(700, False, resumed=3000).value == 700  # a named length wins
    monkeypatch.setattr(auto, "cxx_compiler", lambda env=None: CXX)
    monkeypatch.setattr(auto, "cpu_flags", lambda: AMX)
    cfg = OmegaConf.create({"trainer": {"accelerator": "cpu", "precision": "auto", "max_steps": "auto"},
                            "compile": "auto", "compile_min_steps": 1000, "model": {"attention": "auto"}})
    # compile=auto weighs the compile against the resumed length (here too short to pay back)
    assert [d.value for d in auto.resolve(cfg, resumed_steps=400)] == ["bf16-mixed", False, "sdpa", 400]


def test_a_checkpoint_records_the_length_a_resume_keeps():
    """run._recorded_max_steps: the module's record wins over the schedule's total_steps (which older files only
    have, and which a user may have set apart from max_steps); nothing usable means this machine's auto."""
    from scratchllm.training.run import _recorded_max_steps

    hparams = {"hyper_parameters": {"scheduler": {"total_steps": 2000}}}
    assert _recorded_max_steps({"scratchllm": {"max_steps": 3000}, **hparams}) == 3000
    assert _recorded_max_steps(hparams) == 2000  # a file written before the record
    assert _recorded_max_steps({"scratchllm": {"max_steps": -1}}) is None  # Lightning's "no limit"
    assert _recorded_max_steps({"hyper_parameters": {"scheduler": {"total_steps": None}}}) is None
    assert _recorded_max_steps({}) is None


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
    cfg = OmegaConf.create({"trainer": {"accelerator": "cpu", "precision": "auto", "max_steps": "auto"},
                            "compile": "auto", "compile_min_steps": 1000, "model": {"attention": "auto"}})
    decisions = auto.resolve(cfg)
    assert [d.value for d in decisions] == ["bf16-mixed", True, "explicit", auto.FAST_STEPS]
    assert "auto" not in OmegaConf.to_yaml(cfg)
    # a CPU without native bf16 falls back to today's default run: fp32, eager, SDPA, 1,500 steps
    monkeypatch.setattr(auto, "cpu_flags", lambda: OLD)
    cfg = OmegaConf.create({"trainer": {"accelerator": "cpu", "precision": "auto", "max_steps": "auto"},
                            "compile": "auto", "compile_min_steps": 1000, "model": {"attention": "auto"}})
    assert [d.value for d in auto.resolve(cfg)] == ["32-true", False, "sdpa", auto.SLOW_STEPS]
    # no compiler: eager (whatever the precision), so the shorter run
    monkeypatch.setattr(auto, "cpu_flags", lambda: AMX)
    monkeypatch.setattr(auto, "cxx_compiler", lambda env=None: NO_CXX)
    cfg = OmegaConf.create({"trainer": {"accelerator": "cpu", "precision": "auto", "max_steps": "auto"},
                            "compile": "auto", "compile_min_steps": 1000, "model": {"attention": "auto"}})
    assert [d.value for d in auto.resolve(cfg)] == ["bf16-mixed", False, "sdpa", auto.SLOW_STEPS]
    assert all(d.line().startswith(d.name + "=") for d in decisions)


def test_fsdp_on_cpu_stays_fp32(monkeypatch):
    """Lightning's FSDP bf16 on CPU is bf16 in every op (no CPU autocast): auto keeps such a run in fp32."""
    monkeypatch.setattr(auto, "cxx_compiler", lambda env=None: CXX)
    monkeypatch.setattr(auto, "cpu_flags", lambda: AMX)
    cfg = OmegaConf.create({"trainer": {"accelerator": "cpu", "precision": "auto", "max_steps": 3000,
                                        "strategy": {"_target_": "scratchllm.training.strategies.fsdp"}},
                            "compile": "auto", "compile_min_steps": 1000, "model": {"attention": "auto"}})
    decisions = auto.resolve(cfg)
    assert decisions[0].value == "32-true" and "FSDP" in decisions[0].reason
    assert decisions[1].value is False  # fp32 on CPU: no compile
    cfg.trainer.precision = "bf16-mixed"  # named: kept
    assert auto.resolve(cfg)[0].value == "bf16-mixed"


def test_model_config_outside_training_reads_auto_as_sdpa():
    assert ModelConfig(attention="auto", vocab_size=65, n_layer=1, n_head=1, n_embd=8).attention == "sdpa"


def test_train_prints_and_records_the_choices(tmp_path):
    """The default command as a user types it (auto is the default): each choice printed with its reason and
    recorded in result.json."""
    proc = subprocess.run(
        [sys.executable, "-m", "scratchllm.train", "trainer.max_steps=3", "sample.max_new_tokens=0", "threads=1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout + proc.stderr
    lines = [line.split(" - ", 1)[-1] for line in out.splitlines() if "fast path: " in line]
    assert [line.split("=")[0] for line in lines] == ["fast path: heap", "fast path: precision",
                                                      "fast path: compile", "fast path: model.attention"]
    assert "compile=False: 3 steps < compile_min_steps" in out
    result = json.loads(next(tmp_path.glob("logs/train/runs/*/result.json")).read_text())
    assert result["fast_path"]["compile"] is False and result["fast_path"]["model.attention"] == "sdpa"
    assert result["fast_path"]["precision"] in ("bf16-mixed", "32-true")
    assert result["fast_path"]["trainer.max_steps"] == 3 and result["global_step"] == 3
    assert result["fast_path"]["heap"] in ("keep", "default")


def test_train_without_a_compiler_runs_eager_with_one_line(tmp_path):
    """A machine without a C++ compiler (simulated: $CXX names none): the run still trains, eager, and says why."""
    env = {**os.environ, "CXX": str(tmp_path / "no-such-c++")}
    proc = subprocess.run(
        [sys.executable, "-m", "scratchllm.train", "trainer.max_steps=3", "compile_min_steps=1",
         "sample.max_new_tokens=0", "threads=1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(x for x in proc.stdout.splitlines() if "fast path: compile=" in x).split(" - ", 1)[-1]
    assert line.startswith("fast path: compile=False: no C++ compiler") and "running eager" in line
    result = json.loads(next(tmp_path.glob("logs/train/runs/*/result.json")).read_text())
    assert result["fast_path"]["compile"] is False and result["global_step"] == 3
