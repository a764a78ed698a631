"""Does llama.cpp run our GGUF export the way we run the model? Greedy tokens of both, for the same prompt.

For each ``--ckpt`` (GPT-2-shaped or Llama-shaped, byte-level BPE tokenizer) and each ``--dtype``: export with the
real entry point (``python -m scratchllm.export format=gguf``), load the file in llama.cpp (through the
``llama_cpp`` bindings of llama-cpp-python, built from its source distribution: a benchmark-only dependency), and
compare, token by token, llama.cpp's greedy continuation with ours:

- ``ours fp32``: our model as trained (float32 weights);
- ``ours, file's weights``: the same model with every matrix rounded exactly as the export rounds it (f16, or a
  Q8_0 / Q4_0 quantize-dequantize round trip by the ``gguf`` package), so what is left between the two columns is
  arithmetic (llama.cpp's kernels accumulate in another order and in part in f16), not weights.

Also compared: llama.cpp's own tokenization of the prompt against ours, and the largest logit difference at the
prompt's last position. llama.cpp runs on the CPU with one thread.

    python experiments/llama_cpp_check.py --ckpt gpt2=bpe_gpt2/last.ckpt --ckpt llama=bpe_llama/last.ckpt \\
        --dtype f16 --dtype q8_0 --out experiments/results/llama_cpp_2026-12-02.md
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.machine import cpu_model  # experiments/ is on the path: this file runs as a script

PROMPT = "ROMEO:\nBut soft, what light through yonder window breaks?\n"


def round_like_export(model: torch.nn.Module, dtype: str) -> None:
    """Round our weights in place to what ``export_gguf`` writes: every matrix (2-D) in ``dtype``; 1-D stays f32.

    Q8_0/Q4_0 blocks run along a row (32 input columns), so the export's row permutation (Llama's q/k) and its
    split of the fused matrices do not change which numbers share a block: the round trip can be done here."""
    import gguf

    qtype = {"q8_0": gguf.GGMLQuantizationType.Q8_0, "q4_0": gguf.GGMLQuantizationType.Q4_0}.get(dtype)
    with torch.no_grad():
        for _, t in model.state_dict(keep_vars=True).items():
            if t.ndim != 2 or dtype == "f32":
                continue
            data = t.detach().float().numpy()
            if qtype is None or data.shape[-1] % 32:
                rounded = data.astype(np.float16).astype(np.float32)
            else:
                rounded = gguf.quants.dequantize(gguf.quants.quantize(data, qtype), qtype)
            t.copy_(torch.from_numpy(np.ascontiguousarray(rounded)).view_as(t))


def ours(ckpt: str, ids: list[int], n: int, dtype: str | None) -> tuple[list[int], np.ndarray]:
    from scratchllm.generation import generate
    from scratchllm.generation.loading import load_for_generation

    model, _ = load_for_generation(ckpt, device="cpu", dtype="float32")
    if dtype:
        round_like_export(model, dtype)
    with torch.inference_mode():
        logits = model(torch.tensor([ids]))[0][0, -1].float().numpy()
        return generate(model, ids, n, temperature=0), logits


def llama_cpp_greedy(path: Path, ids: list[int], n: int, ctx: int, extra_bufts: bool) -> tuple[list[int], list[int],
                                                                                           np.ndarray]:
    import llama_cpp
    import llama_cpp.llama
    from llama_cpp import Llama

    # llama.cpp's "extra buffer types" repack weights for faster CPU kernels (x86 repack / AMX); the high-level
    # Llama class does not expose the switch, so its defaults are patched.
    defaults = llama_cpp.llama_model_default_params

    def params():  # noqa: ANN202
        p = defaults()
        p.use_extra_bufts = extra_bufts
        return p

    llama_cpp.llama.llama_cpp.llama_model_default_params = params
    llm = Llama(model_path=str(path), n_ctx=ctx, n_threads=1, n_batch=ctx, logits_all=True, verbose=False)
    their_ids = llm.tokenize(PROMPT.encode(), add_bos=False, special=False)
    llm.reset()
    llm.eval(ids)
    first = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
    out = []
    for _ in range(n):
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        out.append(tok)
        llm.eval([tok])
    return out, their_ids, first


def same_prefix(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def check(label: str, ckpt: str, dtype: str, n: int, tmp: Path, extra_bufts: bool) -> dict:
    from scratchllm.generation.loading import load_for_generation

    model, tokenizer = load_for_generation(ckpt, device="cpu")
    cfg = model.config
    ctx = cfg.context_length
    out = tmp / f"{label}-{dtype}.gguf"
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    proc = subprocess.run([sys.executable, "-m", "scratchllm.export", "format=gguf", f"ckpt_path={ckpt}",
                           f"output={out}", f"dtype={dtype}"], capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"export failed: {proc.stderr[-2000:]}")
    ids = tokenizer.encode(PROMPT)
    n = min(n, ctx - len(ids))
    mine, mine_logits = ours(ckpt, ids, n, None)
    rounded, rounded_logits = ours(ckpt, ids, n, dtype)
    theirs, their_ids, their_logits = llama_cpp_greedy(out, ids, n, ctx, extra_bufts)
    v = cfg.vocab_size
    return {"label": label, "arch": f"{cfg.position}/{cfg.norm}/{cfg.mlp}",
            "dtype": dtype, "n": n, "bytes": out.stat().st_size, "tokenize_equal": their_ids == ids,
            "same_fp32": same_prefix(theirs, mine), "same_rounded": same_prefix(theirs, rounded),
            "ours_vs_rounded": same_prefix(mine, rounded),
            "max_logit_diff": float(np.abs(their_logits[:v] - rounded_logits[:v]).max()),
            "logit_scale": float(np.abs(rounded_logits[:v]).max()),
            "text_theirs": tokenizer.decode(theirs), "text_ours": tokenizer.decode(mine)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", action="append", required=True, metavar="LABEL=PATH")
    p.add_argument("--dtype", action="append", choices=("f32", "f16", "q8_0", "q4_0"))
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--extra-bufts", action="store_true",
                   help="let llama.cpp repack weights (its default; here q8_0 then segfaults in decode, see results)")
    p.add_argument("--out")
    args = p.parse_args()
    torch.set_num_threads(1)
    import llama_cpp

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.ckpt:
            label, ckpt = spec.split("=", 1)
            for dtype in args.dtype or ["f16", "q8_0"]:
                print(f"{label} {dtype} …", file=sys.stderr, flush=True)
                rows.append(check(label, ckpt, dtype, args.new_tokens, Path(tmp), args.extra_bufts))
    cmd = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    lines = [f"# llama.cpp runs our GGUF export ({time.strftime('%Y-%m-%d')})", "",
             f"Machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, llama-cpp-python "
             f"{llama_cpp.__version__} (built from its sdist with Debian gcc/cmake, CPU, 1 thread, use_extra_bufts="
             f"{args.extra_bufts}). Prompt "
             f"{PROMPT!r}, greedy. Command:", "", "```sh", cmd, "```", "",
             "| model | arch | GGUF dtype | file | llama.cpp tokenizes the prompt = ours | greedy tokens = ours "
             "(file's weights) | = ours fp32 | ours fp32 = ours (file's weights) | max logit diff (last prompt "
             "position) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['arch']} | {r['dtype']} | {r['bytes'] / 2**20:.2f} MB | "
                     f"{'yes' if r['tokenize_equal'] else 'NO'} | {r['same_rounded']}/{r['n']} | "
                     f"{r['same_fp32']}/{r['n']} | {r['ours_vs_rounded']}/{r['n']} | "
                     f"{r['max_logit_diff']:.2e} (of {r['logit_scale']:.1f}) |")
    lines += ["", "Continuations (llama.cpp / ours fp32):", "", "```text"]
    for r in rows:
        lines += [f"{r['label']} {r['dtype']} llama.cpp: {r['text_theirs'][:160]!r}",
                  f"{r['label']} {r['dtype']} ours     : {r['text_ours'][:160]!r}"]
    lines += ["```", ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
