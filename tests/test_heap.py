"""``heap=auto|keep|default``: the choice and its reasons, and the behaviour it buys (no page faults re-mapping
memory a step freed), measured in fresh processes."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from scratchllm.errors import ConfigError
from scratchllm.heap import choose_heap, without_allocator_env

GLIBC = platform.libc_ver()[0] == "glibc"
_THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")
THP_ALWAYS = _THP.is_file() and "[always]" in _THP.read_text()


def test_auto_keeps_on_glibc_unless_the_environment_sets_the_allocator():
    assert choose_heap("auto", environ={}, libc="glibc").value == "keep"
    assert choose_heap(None, environ={}, libc="glibc").value == "keep"
    for env in ({"MALLOC_MMAP_THRESHOLD_": "65536"}, {"MALLOC_TRIM_THRESHOLD_": "0"},
                {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"},
                {"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"}):
        choice = choose_heap("auto", environ=env, libc="glibc")
        assert choice.value == "default" and choice.reason.endswith("; left as it is"), choice
    # a value named in the config wins over the environment
    assert choose_heap("keep", environ={"MALLOC_MMAP_THRESHOLD_": "65536"}, libc="glibc").value == "keep"
    assert choose_heap("default", environ={}, libc="glibc").value == "default"
    gpu = choose_heap("auto", environ={}, libc="glibc", kind="cuda")  # a GPU run's step memory is the GPU's
    assert gpu.value == "default" and "cuda" in gpu.reason


def test_children_started_without_the_allocator_variables_get_auto_keep():
    """What auto respects is exactly what the benchmark and the fault test scrub for their children."""
    env = {"MALLOC_MMAP_THRESHOLD_": "65536", "GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0",
           "LD_PRELOAD": "libtcmalloc.so", "PATH": "/bin", "MALLOC_ARENA_MAX": "2"}
    scrubbed = without_allocator_env(env)
    assert scrubbed == {"PATH": "/bin", "MALLOC_ARENA_MAX": "2"}
    assert choose_heap("auto", environ=env, libc="glibc").value == "default"
    assert choose_heap("auto", environ=scrubbed, libc="glibc").value == "keep"
    # tunables for other parts of glibc and a preload that is not an allocator are not the allocator's settings
    other = {"GLIBC_TUNABLES": "glibc.pthread.rseq=0", "LD_PRELOAD": "libfakeroot.so"}
    assert without_allocator_env(other) == other


def test_other_c_libraries_and_bad_values():
    assert choose_heap("auto", environ={}, libc="").value == "default"  # macOS, musl: nothing to tune
    with pytest.raises(ConfigError, match="heap=keep tunes glibc's malloc"):
        choose_heap("keep", environ={}, libc="")
    with pytest.raises(ConfigError, match="heap must be one of auto, keep, default"):
        choose_heap("always", environ={}, libc="glibc")


# Allocate 24 blocks of 1 MiB with libc's malloc (no Python or torch allocations in between), touch every page,
# free them all, five times. glibc's default trims the freed top of the heap (its trim threshold follows the largest
# freed mmap block: 2 MiB here), so every round faults the pages in again; with heap=keep the later rounds reuse
# the heap's pages. Seen here: default [6168, 6136, 6112, 6112, 6112], keep [6136, 0, 0, 0, 0].
_ROUNDS = """
import ctypes, resource, sys
from scratchllm.heap import apply_heap
print(apply_heap(sys.argv[1]).value)
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
faults = []
for _ in range(5):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [libc.malloc(2**20) for _ in range(24)]
    for block in blocks:
        libc.memset(block, 1, 2**20)
    for block in blocks:
        libc.free(block)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sum(faults[1:]))
"""


@pytest.mark.skipif(not GLIBC, reason="heap=keep tunes glibc's malloc")
@pytest.mark.skipif(THP_ALWAYS, reason="transparent huge pages 'always': the heap faults in 2 MiB at a time")
def test_keep_stops_page_faults_for_memory_freed_before():
    env = without_allocator_env(dict(os.environ))
    faults = {}
    for heap in ("keep", "default"):
        out = subprocess.run([sys.executable, "-c", _ROUNDS, heap], capture_output=True, text=True, env=env,
                             timeout=120, check=True).stdout.split()
        assert out[0] == heap
        faults[heap] = int(out[1])
    pages = 4 * 24 * 2**20 // 4096  # four rounds of 24 MiB
    assert faults["default"] > 0.8 * pages, faults  # glibc's default: faulted in again, round after round
    assert faults["keep"] < 0.05 * pages, faults
