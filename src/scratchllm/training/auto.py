"""What ``precision=auto``, ``compile=auto`` and ``model.attention=auto`` become on this machine, and why.

The fast settings (bf16 autocast on matrix units, ``torch.compile``, the explicit attention that Inductor fuses on
CPU) are measured to pay on some machines and to cost on others, so the choice is made from facts about the
device, once, before the model is built. Every decision carries its reason; the run prints them at start and
records the resolved values in its config and ``result.json`` — a checkpoint never holds the word ``auto``.

The rules (each is a plain function here so a test can feed it other machines):

- precision: ``bf16-mixed`` where the device multiplies bf16 natively — CUDA compute capability ≥ 8.0 (Ampere),
  a CPU with AMX-BF16 or AVX512-BF16 — else ``32-true`` (emulated bf16 is slower than fp32).
- compile: on when a C++ compiler is there (Inductor writes and builds C++ on CPU; Triton needs a C compiler for
  its launcher on GPU), the run is long enough for the compile (tens of seconds, cold) to be paid back
  (``compile_min_steps`` optimizer steps; smoke tests and ``debug=`` runs stay eager) and, on CPU, the run is in
  bf16: there the fusion of the casts and the softmax chain pays 1.4–1.6× (nano, micro), while in fp32 the matmuls
  already run at 60–80% of the fp32 ceiling and compiling measured 0.98× (nano) to 1.09× (micro) for ~55 s of
  cold compile (``experiments/results/default_candidates_2026-12-02*.md``).
- attention: ``explicit`` when compiled on CPU (Inductor fuses the softmax chain; CPU SDPA's backward is not
  fused), ``sdpa`` otherwise (flash / memory-efficient kernels on GPU).
- steps (``trainer.max_steps=auto``, the default run's): the default run is sized to a few minutes on 2 CPU cores —
  ``FAST_STEPS`` (2,500) where the fast path runs (compiled bf16 on CPU, any compiled GPU run), ``SLOW_STEPS``
  (1,500) where it does not (fp32 eager: a CPU without native bf16, or no compiler).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from scratchllm.machine import cpu_flags, cxx_compiler  # looked up here at each call: tests patch auto.<name>

AUTO = "auto"
FAST_STEPS = 2500
SLOW_STEPS = 1500


@dataclass(frozen=True)
class Decision:
    """One resolved setting: the value used, and the one-line reason a user reads at start."""

    name: str
    value: Any
    reason: str

    def line(self) -> str:
        return f"{self.name}={self.value}: {self.reason}"


# ------------------------------------------------------------------------------------------------ device facts
def device_kind(accelerator: str | None) -> str:
    """``cuda`` or ``cpu``: what Lightning's ``trainer.accelerator`` will run on."""
    acc = str(accelerator or "auto").lower()
    if acc in ("gpu", "cuda") or (acc == "auto" and torch.cuda.is_available()):
        return "cuda"
    return "cpu"


def fast_bf16(kind: str, flags: frozenset[str] | None = None, capability: tuple[int, int] | None = None
              ) -> tuple[bool, str]:
    """Whether bf16 matmuls run natively (faster than fp32) on this device, and the fact that decided it."""
    if kind == "cuda":
        major, minor = capability or torch.cuda.get_device_capability()
        if (major, minor) >= (8, 0):
            return True, f"CUDA compute capability {major}.{minor} has bf16 tensor cores"
        return False, f"CUDA compute capability {major}.{minor} < 8.0 has no bf16 tensor cores"
    flags = cpu_flags() if flags is None else flags
    for flag, what in (("amx_bf16", "AMX-BF16 matrix units"), ("avx512_bf16", "AVX512-BF16")):
        if flag in flags:
            return True, f"the CPU has {what}"
    return False, "the CPU has neither AMX-BF16 nor AVX512-BF16 (bf16 would be emulated, slower than fp32)"


# ------------------------------------------------------------------------------------------------ decisions
def decide_precision(requested: Any, kind: str, fsdp: bool = False, **facts: Any) -> Decision:
    if str(requested) != AUTO:
        return Decision("precision", requested, "as configured")
    if fsdp and kind == "cpu":
        # Lightning's FSDP plugin hands bf16 to FSDP's own mixed precision (bf16 parameters in every op) and
        # autocasts only on CUDA: on CPU norms and softmax would run in bf16 too, unlike every other CPU run
        return Decision("precision", "32-true", "FSDP on CPU would compute everything in bf16 (Lightning "
                                                "autocasts only on CUDA); fp32 keeps it equal to a DDP run")
    fast, why = fast_bf16(kind, **facts)
    return Decision("precision", "bf16-mixed" if fast else "32-true", why)


def decide_compile(requested: Any, kind: str, max_steps: int, min_steps: int,
                   compiler: tuple[str | None, str] | None = None, precision: Any = "bf16-mixed") -> Decision:
    if str(requested) != AUTO:
        value = bool(requested) and str(requested).lower() not in ("false", "0", "none")
        if value:
            path, why = compiler or cxx_compiler(os.environ.get("CXX"))
            if path is None:
                return Decision("compile", False, f"compile=true but {why}; running eager")
        return Decision("compile", value, "as configured")
    path, why = compiler or cxx_compiler(os.environ.get("CXX"))
    if path is None:
        return Decision("compile", False, why + "; running eager")
    if max_steps < min_steps:
        return Decision("compile", False, f"{max_steps} steps < compile_min_steps={min_steps}: the compile "
                                          f"(tens of seconds) would not be paid back")
    if kind == "cpu" and not ("bf16" in str(precision) and fast_bf16(kind)[0]):
        return Decision("compile", False, f"precision={precision} on this CPU: the matmuls are the step (fp32, or "
                                          f"emulated bf16) and compiling measured 0.98-1.09x for ~55 s of compile; "
                                          f"running eager")
    return Decision("compile", True, f"{max_steps} steps ≥ compile_min_steps={min_steps}, {why}")


def decide_steps(requested: Any, compiled: bool, resumed: int | None = None) -> Decision:
    """``trainer.max_steps=auto``: as many steps as fit the default run's few minutes on this machine's path; a
    resumed run keeps the length its checkpoint was trained towards (its schedule was built for it)."""
    if str(requested) != AUTO:
        return Decision("trainer.max_steps", requested, "as configured")
    if resumed:
        return Decision("trainer.max_steps", int(resumed), "the resumed checkpoint's run length (its learning-rate "
                                                           "schedule runs to it)")
    if compiled:
        return Decision("trainer.max_steps", FAST_STEPS, "the compiled fast path trains 2,500 nano steps in "
                                                         "~2 minutes on 2 CPU cores")
    return Decision("trainer.max_steps", SLOW_STEPS, "eager: 1,500 steps keep the default run to a few minutes "
                                                     "(the compiled fast path would run 2,500)")


def decide_attention(requested: Any, kind: str, compiled: bool) -> Decision:
    if str(requested) != AUTO:
        return Decision("model.attention", requested, "as configured")
    if kind == "cpu" and compiled:
        return Decision("model.attention", "explicit", "compiled on CPU: Inductor fuses the explicit softmax "
                                                       "attention, forward and backward")
    where = "GPU: flash / memory-efficient kernels" if kind == "cuda" else "eager on CPU: one fused kernel"
    return Decision("model.attention", "sdpa", where)


def resolve(cfg: Any, resumed_steps: int | None = None) -> list[Decision]:
    """Resolve every ``auto`` of a training config in place; returns the decisions (printed by the caller).
    ``resumed_steps``: the ``max_steps`` a resumed checkpoint was trained towards (``auto`` keeps it, so a run
    resumed on another kind of machine does not change length and jump in its schedule)."""
    from omegaconf import open_dict

    kind = device_kind(cfg.trainer.get("accelerator"))
    strategy = cfg.trainer.get("strategy")
    target = str(strategy.get("_target_", "")) if hasattr(strategy, "get") else str(strategy or "")
    precision = decide_precision(cfg.trainer.get("precision"), kind, fsdp=target.endswith("fsdp"))
    requested_steps = cfg.trainer.get("max_steps")
    # compile=auto weighs the compile against the run's length; an auto length is the compiled one (FAST_STEPS)
    if str(requested_steps) == AUTO:
        steps_if_compiled = resumed_steps or FAST_STEPS
    else:
        steps_if_compiled = int(requested_steps or 0)
    compiled = decide_compile(cfg.get("compile", False), kind, steps_if_compiled,
                              int(cfg.get("compile_min_steps", 1000)), precision=precision.value)
    steps = decide_steps(requested_steps, compiled.value, resumed_steps)
    attention = decide_attention(cfg.model.get("attention", "sdpa"), kind, compiled.value)
    with open_dict(cfg):
        cfg.trainer.precision = precision.value
        cfg.trainer.max_steps = steps.value
        cfg.compile = compiled.value
        cfg.model.attention = attention.value
    return [precision, compiled, attention, steps]
