"""The accelerators the planner knows: dense bf16 peak, memory, GPUs per node, and the MFU to assume.

Peaks are the vendors' dense (no sparsity) bf16 tensor-core figures. Default MFUs are published measurements of
training runs like ours, so the time estimate is something someone achieved, not a ceiling:
- A100: TinyLlama-1.1B, 3T tokens on A100-40GB at 52% MFU (litgpt's pretraining of TinyLlama).
- H100: torchtitan, Llama-3-8B on 8×H100 with FSDP, 33–39% MFU: 0.36 is the middle.
- L4 and CPU: no published reference; 0.40 and 0.30 are assumptions (say `mfu=` when you know better).
"""

from __future__ import annotations

from dataclasses import dataclass

from scratchllm.errors import ConfigError


@dataclass(frozen=True)
class Accelerator:
    name: str
    peak_tflops: float  # dense bf16
    memory_gb: float  # per device, 1e9 bytes
    per_node: int  # devices per node (FSDP hybrid shards within a node)
    mfu: float  # default model-FLOPs utilisation
    mfu_source: str

    @property
    def usable_bytes(self) -> float:
        # CUDA context, NCCL buffers and allocator fragmentation take ~10% (a common planning margin).
        return 0.9 * self.memory_gb * 1e9


ACCELERATORS = {
    a.name: a
    for a in (
        Accelerator("h100", 989.0, 80, 8, 0.36, "torchtitan Llama-3-8B, 8×H100 FSDP: 33–39% MFU"),
        Accelerator("a100-80gb", 312.0, 80, 8, 0.52, "TinyLlama-1.1B on A100s: 52% MFU (litgpt)"),
        Accelerator("a100-40gb", 312.0, 40, 8, 0.52, "TinyLlama-1.1B on 64 A100-40GB: 52% MFU (litgpt)"),
        Accelerator("l4", 121.0, 24, 8, 0.40, "assumption (no published reference)"),
        Accelerator("cpu", 2.0, 64, 1, 0.30, "assumption: a nominal 2 TFLOP/s bf16 (AMX) CPU with 64 GB"),
    )
}


def get_accelerator(name: str, *, peak_tflops: float | None = None, memory_gb: float | None = None,
                    mfu: float | None = None) -> Accelerator:
    """The named accelerator, with any of its figures replaced."""
    if name not in ACCELERATORS:
        raise ConfigError(f"gpu={name!r} is not a device the planner knows; choose one of: {', '.join(ACCELERATORS)}")
    acc = ACCELERATORS[name]
    if mfu is not None and not 0 < mfu <= 1:
        raise ConfigError(f"mfu={mfu} must be a fraction in (0, 1], e.g. mfu=0.4")
    return Accelerator(
        acc.name,
        peak_tflops or acc.peak_tflops,
        memory_gb or acc.memory_gb,
        acc.per_node,
        mfu or acc.mfu,
        acc.mfu_source if mfu is None else "given on the command line",
    )
