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


def test_quantize_serves_generates_quantized_tokens(tmp_path: Path, tiny_ckpt: Path) -> None:
    """``quantize=int8`` goes through the loader generate uses: the server answers with the tokens generate gives
    the same quantized model (and with other tokens than the float model, on this random model)."""
    import json
    import urllib.request

    from tests.serving import serving_fixtures  # noqa: F401 - puts experiments/ on the path
    from serving_harness import running_server

    from scratchllm.generation import SamplingConfig, generate
    from scratchllm.generation.loading import load_for_generation

    model, tok = load_for_generation(tiny_ckpt, device="cpu", quantize="int8")
    assert type(model.blocks[0].mlp.fc).__name__ != "Linear"  # the linears were converted
    prompt = tok.encode("ROMEO:")
    want = generate(model, prompt, 24, sampling=SamplingConfig(temperature=0, top_k=None), eot_id=tok.eot_id)
    with running_server(tiny_ckpt, tmp_path, "quantize=int8") as base:
        request = urllib.request.Request(base + "/v1/completions", headers={"Content-Type": "application/json"},
                                         data=json.dumps({"prompt": "ROMEO:", "max_tokens": 24,
                                                          "temperature": 0}).encode())
        with urllib.request.urlopen(request, timeout=60) as r:
            assert json.load(r)["choices"][0]["token_ids"] == want
    assert "weights int8" in (tmp_path / "server.log").read_text()
    done = serve(tmp_path, f"ckpt_path={tiny_ckpt}", "quantize=int3")
    assert done.returncode == 2 and "quantize='int3' is not known; choose one of: none, int8, int4" in done.stderr
