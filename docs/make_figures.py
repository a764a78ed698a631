"""Draw the tour's pictures and compute its tables from one trained checkpoint (docs/figures/).

    .venv/bin/python docs/make_figures.py --ckpt logs/train/runs/<time>/checkpoints/last.ckpt \
        --runs logs/train/runs/<time> logs/train/runs/<overfit time> --out docs/figures

Everything here calls the template (the plot command's own function, the tokenizers, the sampling filters, the
quantizers, LoRA, the planner); nothing re-implements the model. ``tests/test_docs.py`` runs it on a two-step
model in a temporary folder, so a change that breaks a picture fails CI. The tables go to ``<out>/tables.md``;
the chapters quote them.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import io
import json
import subprocess
import sys
from pathlib import Path

import torch

PROMPT = "ROMEO: But soft, what light through yonder window breaks?"
ATTENTION_PROMPT = "JULIET: O Romeo, Romeo!"  # short enough (<= 24 tokens) for the plot to label every token
NEXT_TOKEN_PROMPT = "ROMEO:\nI will "  # a word starts here: a wide distribution to filter


def _plot(what: str, out: Path, **options) -> Path:
    """The plot command's own code path (``python -m scratchllm.plot what=…``), in this process."""
    from scratchllm.plots.command import PlotOptions, make_plot

    path, _ = make_plot(PlotOptions(what=what, out=str(out), **options))
    return path


def _table(rows: list[list[object]], header: list[str]) -> str:
    align = ["---" if i == 0 else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    # a "|" inside a cell (the chat markers) would end the cell, even inside a code span: escape it
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _held_out(chars: int) -> str:
    from scratchllm.evaluation.session import load_texts

    return "\n".join(load_texts("shakespeare_val"))[:chars]


# ------------------------------------------------------------------------------------------ chapters
def tokenization(model, tok, ckpt: str, out: Path, text: str) -> str:
    from scratchllm.tokenizers import build_tokenizer

    _plot("tokens", out / "tokens.png", ckpt_path=ckpt, prompt=PROMPT)
    rows = []
    n_bytes = len(text.encode("utf-8"))
    for name, t in [("char (the trained model's)", tok), ("gpt2 (BPE, 50,257)", build_tokenizer("gpt2"))]:
        n = len(t.encode(text))
        rows.append([name, f"{t.vocab_size:,}", f"{n:,}", f"{n_bytes / n:.2f}"])
    return "### tokenization: held-out plays\n\n" + _table(rows, ["tokenizer", "vocabulary", "tokens", "bytes/token"])


def positions(model, tok, ckpt: str, out: Path) -> str:
    from scratchllm.model import GPT
    from scratchllm.plots import figures

    _plot("positions", out / "positions_learned.png", ckpt_path=ckpt)
    # RoPE has no weights to learn: the rotation angles are fixed, so a fresh model of the same shape shows them
    rope = GPT(dataclasses.replace(model.config, position="rope"))
    fig, _ = figures.positions_figure(rope, 1200, 500)
    figures.save(fig, out / "positions_rope.png")
    emb = model.pos_emb.weight.detach() if model.pos_emb is not None else None
    if emb is None:
        return ""
    sim = torch.nn.functional.cosine_similarity(emb[:, None], emb[None], dim=-1)
    rows = [[d, f"{sim.diagonal(d).mean():.3f}"] for d in (1, 2, 4, 8, 16, 32) if d < emb.shape[0]]
    return ("### positions: learned embeddings, mean cosine similarity of positions d apart\n\n"
            + _table(rows, ["distance d", "cosine similarity"]))


def attention(ckpt: str, out: Path, layers: list[int]) -> str:
    _plot("attention", out / "attention.png", ckpt_path=ckpt, prompt=ATTENTION_PROMPT, layers=layers)
    return ""


def block(model) -> str:
    from scratchllm.model import GPT

    fresh = GPT(model.config)
    rows = []
    for name in ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj"):
        init = torch.stack([p.std() for n, p in fresh.named_parameters() if n.endswith(name + ".weight")]).mean()
        now = torch.stack([p.std() for n, p in model.named_parameters() if n.endswith(name + ".weight")]).mean()
        rows.append([f"`{name}`", f"{init:.4f}", f"{now:.4f}"])
    return ("### block: weight standard deviation, at init and trained (mean over layers)\n\n"
            + _table(rows, ["matrix", "at init", "trained"]))


def _run_schedule(run: Path) -> tuple[int, int]:
    """(warmup_steps, max_steps) the run was trained with, from its composed config."""
    from omegaconf import OmegaConf

    config = run / ".hydra" / "config.yaml"
    if config.is_file():
        cfg = OmegaConf.load(config)
        return int(cfg.scheduler.get("warmup_steps", 100)), int(cfg.trainer.max_steps)
    return 100, 1500


def training(runs: list[str], out: Path, warmup: int, max_steps: int) -> str:
    import matplotlib

    matplotlib.use("Agg")
    from scratchllm.plots import figures
    from scratchllm.training.optim import WarmupCosine

    _plot("loss", out / "loss.png", run=runs)
    schedule = WarmupCosine(warmup_steps=warmup, total_steps=max_steps)
    fig = figures.new_figure(700, 350)
    ax = fig.add_subplot(1, 1, 1)
    steps = list(range(max_steps + 1))
    ax.plot(steps, [schedule(s) for s in steps])
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("lr / peak lr")
    ax.set_title(f"WarmupCosine(warmup_steps={schedule.warmup_steps}, total_steps={max_steps})")
    figures.save(fig, out / "lr_schedule.png")
    rows = []
    for run in runs:
        result = Path(run) / "result.json"
        if result.is_file():
            r = json.loads(result.read_text())
            curve = r.get("curve") or [{"step": 0, "val_loss": float("nan")}]
            best = min(curve, key=lambda c: c["val_loss"])
            rows.append([Path(run).name, r.get("global_step"), f"{curve[0]['val_loss']:.3f} (step {curve[0]['step']})",
                         f"{best['val_loss']:.3f} (step {best['step']})", f"{r.get('val_loss', float('nan')):.3f}"])
    return "### training: validation loss\n\n" + _table(rows, ["run", "steps", "first", "best", "final"])


def sampling(model, tok, out: Path) -> str:
    from scratchllm.generation import apply_temperature, min_p_filter, top_k_filter, top_p_filter
    from scratchllm.plots import figures

    ids = tok.encode(NEXT_TOKEN_PROMPT)
    with torch.no_grad():
        logits = model(torch.tensor([ids]))[0][0, -1].float()
    settings = {
        "temperature 1": logits,
        "temperature 0.5": apply_temperature(logits, 0.5),
        "top_k=5": top_k_filter(logits, 5),
        "top_p=0.9": top_p_filter(logits, 0.9),
        "min_p=0.1": min_p_filter(logits, 0.1),
    }
    base = torch.softmax(logits, -1)
    shown = base.argsort(descending=True)[:20]
    labels = [figures.token_label(tok.decode([int(i)])) for i in shown]
    fig = figures.new_figure(1400, 320)
    rows = []
    for n, (name, filtered) in enumerate(settings.items()):
        probs = torch.softmax(filtered, -1)
        ax = fig.add_subplot(1, len(settings), n + 1)
        ax.bar(range(len(shown)), probs[shown].tolist(), color=["C0" if p > 0 else "C7" for p in probs[shown]])
        ax.set_xticks(range(len(shown)), labels, fontsize=7, rotation=90)
        ax.set_ylim(0, 1.1 * max(float(torch.softmax(f, -1).max()) for f in settings.values()))
        ax.set_title(name, fontsize=9)
        kept = int((probs > 0).sum())
        top = int(probs.argmax())
        rows.append([name, kept, f"{figures.token_label(tok.decode([top]))!r}", f"{float(probs.max()):.3f}"])
    figures.save(fig, out / "sampling.png")
    return (f"### sampling: the next token after {NEXT_TOKEN_PROMPT!r}\n\n"
            + _table(rows, ["setting", "tokens left", "most likely", "its probability"]))


def finetuning(model, tok, out: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    from scratchllm.finetune import ChatTemplate, add_chat_tokens
    from scratchllm.finetune.lora import LoRAConfig, apply_lora, lora_layers
    from scratchllm.plots import figures
    from scratchllm.training.objectives_dpo import dpo_loss

    chat_tok = copy.deepcopy(tok)
    add_chat_tokens(chat_tok)
    rendered = ChatTemplate(chat_tok).render([{"role": "user", "content": "Who speaks next?"},
                                              {"role": "assistant", "content": "ROMEO"}])
    spans: list[list[object]] = []
    for token, learn in zip(rendered.ids, rendered.mask):
        piece = chat_tok.decode([token])
        if spans and spans[-1][1] == learn:
            spans[-1][0] += piece
        else:
            spans.append([piece, learn])
    mask_rows = [[f"`{s!r}`", "yes" if learn else "no (label -100)"] for s, learn in spans]
    # LoRA: the trained matrices' spectrum, and how few numbers a low-rank update trains
    fig = figures.new_figure(700, 380)
    ax = fig.add_subplot(1, 1, 1)
    for name, p in model.named_parameters():
        if name.startswith("blocks.0.") and p.ndim == 2:
            s = torch.linalg.svdvals(p.detach().float())
            ax.plot((s / s[0]).tolist(), label=name)
    ax.set_yscale("log")
    ax.set_xlabel("singular value index")
    ax.set_ylabel("σᵢ / σ₀")
    ax.legend(fontsize=8)
    figures.save(fig, out / "lora_spectrum.png")
    lora_rows = []
    total = sum(p.numel() for p in model.parameters())
    for rank in (4, 8, 16):
        m = copy.deepcopy(model)
        apply_lora(m, LoRAConfig(rank=rank))
        trainable = sum(p.numel() for p in m.parameters() if p.requires_grad)
        lora_rows.append([rank, len(lora_layers(m)), f"{trainable:,}", f"{100 * trainable / total:.1f}%"])
    margins = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0, 5.0])
    dpo_rows = []
    for m in margins:  # policy log-prob gain on the chosen answer, the reference unchanged
        loss, _ = dpo_loss(m[None] / 0.1, torch.zeros(1), torch.zeros(1), torch.zeros(1), beta=0.1)
        dpo_rows.append([f"{float(m):+.0f}", f"{float(loss):.3f}"])
    return ("### fine-tuning: which tokens the loss counts (the trained model's tokenizer + chat markers)\n\n"
            + _table(mask_rows, ["text", "counted in the loss"])
            + f"\n### fine-tuning: LoRA on the trained model ({total:,} parameters)\n\n"
            + _table(lora_rows, ["rank", "wrapped linears", "trainable parameters", "of the model"])
            + "\n### fine-tuning: DPO loss against the reward margin (β = 0.1)\n\n"
            + _table(dpo_rows, ["margin β·Δ", "loss −log σ(margin)"]))


def quantization(model, tok, out: Path, text: str) -> str:
    from scratchllm.evaluation.scoring import score_text
    from scratchllm.plots import figures
    from scratchllm.quantization import (QuantConfig, dequantize_int4, dequantize_int8, quantize_int4,
                                         quantize_int8, quantize_model, weight_bytes)

    w = model.blocks[0].mlp.fc.weight.detach().float()
    err8 = w - dequantize_int8(*quantize_int8(w))
    packed, scales, zeros = quantize_int4(w, 64, False)
    err4 = w - dequantize_int4(packed, scales, zeros)
    fig = figures.new_figure(1000, 350)
    for n, (name, err) in enumerate([("weights", w), ("int8 error", err8), ("int4 (group 64) error", err4)]):
        ax = fig.add_subplot(1, 3, n + 1)
        ax.hist(err.flatten().tolist(), bins=80)
        ax.set_title(f"{name}: std {float(err.std()):.2e}", fontsize=9)
    figures.save(fig, out / "quantization.png")
    rows = []
    base = score_text(model.eval(), tok, text)
    rows.append(["float32", f"{weight_bytes(model):,}", f"{base.perplexity:.3f}", ""])
    for quant in [QuantConfig("int8"), QuantConfig("int4", 32), QuantConfig("int4", 64),
                  QuantConfig("int4", 128)]:
        m = copy.deepcopy(model)
        try:
            quantize_model(m, quant)
        except Exception as e:  # a group size that does not divide this model's widths
            print(f"skip {quant}: {e}", file=sys.stderr)
            continue
        s = score_text(m.eval(), tok, text)
        label = quant.method + (f" group {quant.group_size}" if quant.method == "int4" else "")
        rows.append([label, f"{weight_bytes(m):,}", f"{s.perplexity:.3f}",
                     f"{100 * (s.perplexity / base.perplexity - 1):+.2f}%"])
    return (f"### quantization: held-out perplexity ({len(text):,} characters)\n\n"
            + _table(rows, ["weights", "bytes", "perplexity", "change"]))


def scaling(model, out: Path) -> str:
    from scratchllm.model import flops_per_token, param_report
    from scratchllm.plots import figures

    report = param_report(model.config)
    counted = sum(p.numel() for p in model.parameters())
    rows = [["parameters (`param_report(config).total`)", f"{report.total:,}"],
            ["parameters counted on the trained model (+ vocabulary padding rows: `param_report(config).padding`)",
             f"{counted:,} = {report.total:,} + {report.padding:,}"],
            ["training FLOPs per token (6N + 12·L·h·s)", f"{flops_per_token(model.config):,}"]]
    plan_dir = out / "_plan"
    subprocess.run([sys.executable, "-m", "scratchllm.plan", "params=1b", "gpus=8", "gpu=h100", f"out={plan_dir}"],
                   check=True, capture_output=True)
    plan = json.loads((plan_dir / "plan.json").read_text())
    options = plan["memory_bytes"]["micro_batch_1"]
    parts = ["weights", "grads", "optimizer", "activations", "buffers"]
    fig = figures.new_figure(1000, 420)
    ax = fig.add_subplot(1, 1, 1)
    names = [f"{o['strategy']}\n{o['checkpointing']}" for o in options]
    bottom = [0.0] * len(options)
    for part in parts:
        values = [o[part] / 1e9 for o in options]
        ax.bar(names, values, bottom=bottom, label=part)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.axhline(plan["hardware"]["usable_gb"], color="k", linestyle="--", label="usable per H100")
    ax.set_ylabel("GB per device (micro-batch 1)")
    ax.set_title("llama-1b on 8 × H100: python -m scratchllm.plan params=1b gpus=8 gpu=h100", fontsize=9)
    ax.tick_params(axis="x", labelsize=7)
    ax.legend(fontsize=7)
    figures.save(fig, out / "plan_memory.png")
    for f in plan_dir.iterdir():
        f.unlink()
    plan_dir.rmdir()
    return "### scaling: the trained model's size\n\n" + _table(rows, ["what", "value"])


# ------------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True, help="a trained checkpoint (.ckpt or run folder)")
    parser.add_argument("--runs", nargs="*", default=None, help="run folders for the loss plot (default: the "
                        "checkpoint's run)")
    parser.add_argument("--out", default="docs/figures")
    parser.add_argument("--chars", type=int, default=50_000, help="held-out characters for the tables")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    from scratchllm.generation.loading import load_for_generation

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = Path(args.ckpt)
    run = ckpt if ckpt.is_dir() else ckpt.parents[1]
    runs = args.runs or [str(run)]
    model, tok = load_for_generation(str(ckpt), device="cpu")
    model.eval()
    text = _held_out(args.chars)
    warmup, steps = _run_schedule(run)
    buf = io.StringIO()
    import datetime
    import os

    buf.write(f"# Tables for the tour\n\n`python docs/make_figures.py {' '.join(argv or sys.argv[1:])}` on "
              f"{datetime.date.today()}, torch {torch.__version__}, {os.cpu_count()} CPU cores.\n\n")
    buf.write(f"Model: {model.config.name}, {model.config.n_layer} layers, width {model.config.n_embd}, "
              f"{steps} steps (warmup {warmup}).\n\n")
    layers = sorted({0, model.config.n_layer - 1})
    for part in (tokenization(model, tok, str(ckpt), out, text), positions(model, tok, str(ckpt), out),
                 attention(str(ckpt), out, layers), block(model), training(runs, out, warmup, steps),
                 sampling(model, tok, out), finetuning(model, tok, out), quantization(model, tok, out, text),
                 scaling(model, out)):
        if part:
            buf.write(part + "\n")
    (out / "tables.md").write_text(buf.getvalue(), encoding="utf-8")
    print(buf.getvalue())
    print(f"wrote {len(list(out.glob('*.png')))} pictures and tables.md to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
