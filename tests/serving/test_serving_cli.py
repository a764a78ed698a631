"""``python -m scratchllm.serve`` mistakes: one line naming the fix, exit 2, before any model is loaded."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def serve(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scratchllm.serve", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_mistakes_are_one_line(tmp_path: Path, tiny_ckpt: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cases = ((["prot=80"], "did you mean port=80"),
                 ([f"ckpt_path={tmp_path / 'none.ckpt'}", "port=0"], "does not exist"),
                 (["max_queue=0"], "max_queue must be a positive integer"),
                 ([f"ckpt_path={tiny_ckpt}", f"port={port}"], f"cannot listen on 127.0.0.1:{port}"))
        for args, message in cases:
            done = serve(tmp_path, *args)
            assert done.returncode == 2 and message in done.stderr, done.stderr
            assert done.stderr.strip().splitlines()[-1].startswith("error: ")
