"""The facts a timing means nothing without: CPU model and flags, cores, threads, GPU, library versions, commit."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

# torch is imported where it is used: the data and tokenizer benchmarks read the CPU model from here without
# paying for (or measuring the memory of) a torch import.

# CPU features that decide which kernels torch can use: AVX-512 for fp32, AVX512_BF16 / AMX for bf16 matmuls.
INTERESTING_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16")
REPO = Path(__file__).resolve().parents[2]


def lscpu() -> dict[str, str]:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    fields = {}
    for line in out.splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            fields[key.strip()] = value.strip()
    return fields


def cpu_model(fields: dict[str, str] | None = None) -> str:
    """The CPU's model name: lscpu's, else /proc/cpuinfo's, else what Python's platform module knows."""
    name = (lscpu() if fields is None else fields).get("Model name")
    if name:
        return name
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def git_commit() -> str:
    """The checked-out commit, read from .git without running git (``+dirty`` is not detected)."""
    git = REPO / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            ref = head[5:]
            path = git / ref
            if path.is_file():
                return path.read_text().strip()[:12]
            for line in (git / "packed-refs").read_text().splitlines():
                if line.endswith(" " + ref):
                    return line.split()[0][:12]
        return head[:12]
    except OSError:
        return "unknown"


def machine_info(device: str) -> dict[str, Any]:
    import lightning
    import torch

    cpu = lscpu()
    flags = set(cpu.get("Flags", "").split())
    sockets = int(cpu.get("Socket(s)", "1") or 1)
    cores_per_socket = int(cpu.get("Core(s) per socket", "0") or 0)
    info: dict[str, Any] = {
        "date": f"{dt.datetime.now():%Y-%m-%d %H:%M}",
        "commit": git_commit(),
        "cpu": cpu_model(cpu),
        "physical_cores": sockets * cores_per_socket or None,
        "logical_cpus": os.cpu_count(),
        "cpu_flags": " ".join(f for f in INTERESTING_FLAGS if f in flags) or "none of " + ",".join(INTERESTING_FLAGS),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "device": device,
        "gpu": torch.cuda.get_device_name(0) if device == "cuda" else "",
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }
    return info


def header_lines(machine: dict[str, Any], command: str) -> list[str]:
    """The command, machine and versions lines that open a result file (``machine`` from ``machine_info``)."""
    return [
        f"- command: `{command}`",
        f"- machine: {machine['cpu']}, {machine['logical_cpus']} logical CPUs ({machine['cpu_flags']}), "
        f"torch threads {machine['torch_threads']}; load average before: {machine['load_avg_1min']:.2f}",
        f"- versions: python {machine['python']}, torch {machine['torch']}, lightning {machine['lightning']}; "
        f"scratchllm commit {machine['commit']}",
    ]
