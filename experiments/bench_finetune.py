"""Fine-tuning results on the built-in plays data: SFT (masked vs unmasked), classification modes, DPO, and LoRA
vs full fine-tuning cost on gpt2-124m shapes. Every training is one ``python -m scratchllm.train`` process.

    python experiments/bench_finetune.py                        # pretrains a nano char model first (~minutes)
    python experiments/bench_finetune.py --init logs/train/runs/<time>/checkpoints/last.ckpt
    python experiments/bench_finetune.py --smoke                # tiny sizes: checks the script, numbers mean nothing
    python experiments/bench_finetune.py --only lora_vs_full    # one part alone (sft, classify, dpo, lora_vs_full)

Writes experiments/results/finetune_<date>[_smoke].md: each row with the command that produced it, beside its
baseline (the "speaker two speeches back" rule for SFT, the majority class and TF-IDF + logistic regression for
classification, 0.5 / 0 reward accuracy / margin at the start of DPO, and the start model's own replies for the
DPO win rate: ``finetune.answers.win_rate``, whose docstring states the judge). ``--only`` writes
finetune_<date>_<parts>.md instead, so that one part can be re-run (e.g. LoRA vs full timing on an idle machine)
without replacing the whole table. Needs scikit-learn for the TF-IDF baseline.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

if __name__ == "__main__":  # run as a script: make `bench` importable
    sys.path[0] = str(Path(__file__).resolve().parent)

from bench.machine import REPO, header_lines, machine_info
from bench.train_subprocess import train_in_subprocess

RESULTS = REPO / "experiments" / "results"
PY = ".venv/bin/python -m scratchllm.train"


def metrics_column(run_dir: Path, name: str) -> list[float]:
    rows = list(csv.DictReader(open(run_dir / "csv" / "metrics.csv")))
    return [float(r[name]) for r in rows if r.get(name)]


def metrics_by_step(run_dir: Path, name: str, max_steps: int) -> dict[int, float]:
    """``name``'s validations during training, by optimizer step: Lightning's CSV writes the one after step n as
    step n - 1; the end-of-run validation (written as step ``max_steps``, the last weights again) is left out."""
    out: dict[int, float] = {}
    for r in csv.DictReader(open(run_dir / "csv" / "metrics.csv")):
        if r.get(name) and int(r["step"]) < max_steps:
            out[int(r["step"]) + 1] = float(r[name])
    return out


def run(overrides: list[str], root: Path, tag: str) -> tuple[dict, Path, str]:
    run_dir = root / tag
    result = train_in_subprocess([*overrides, f"paths.root_dir={root}", "logger=csv"], run_dir)
    return result, run_dir, f"{PY} {' '.join(shlex.quote(o) for o in overrides)}"


def start_command(ckpt: str) -> str:
    """The command that trained ``ckpt``, from its run folder's Hydra record (empty when there is none)."""
    overrides = Path(ckpt).resolve().parent.parent / ".hydra" / "overrides.yaml"
    if not overrides.is_file():
        return ""
    import yaml

    return f"{PY} {' '.join(shlex.quote(str(o)) for o in yaml.safe_load(overrides.read_text()) or [])}"


def dpo_win_rate(dpo_ckpt: str, start_ckpt: str, builtin: dict) -> dict[str, float]:
    from scratchllm.finetune.answers import win_rate
    from scratchllm.finetune.preference import preference_pairs
    from scratchllm.finetune.start import grow_to, load_start

    model, tokenizer = load_start(dpo_ckpt)
    start, _ = load_start(start_ckpt)
    if start.config.vocab_size < tokenizer.vocab_size:  # a start without the chat markers: room for them
        grow_to(start, tokenizer)
    return win_rate(model, start, tokenizer, preference_pairs("who_speaks_next", **builtin)["val"])


def sft_accuracy(ckpt: str, builtin: dict) -> dict[str, float]:
    from scratchllm.finetune.answers import answer_accuracy
    from scratchllm.finetune.chat import add_chat_tokens
    from scratchllm.finetune.plays import baseline_answer, builtin_splits
    from scratchllm.finetune.start import grow_to, load_start

    model, tokenizer = load_start(ckpt)
    add_chat_tokens(tokenizer)  # a no-op for a fine-tuned model; the start model answers through the template too
    grow_to(model, tokenizer)
    val = builtin_splits("who_speaks_next", **builtin)["val"]
    return answer_accuracy(model, tokenizer, val, baseline=baseline_answer)


def classify_baselines(builtin: dict) -> dict[str, float]:
    from collections import Counter

    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from scratchllm.finetune.classify_data import genre_passages

    data = genre_passages(**builtin)
    train_x, train_y = [t for t, _, _ in data["train"]], [y for _, y, _ in data["train"]]
    val_x, val_y = [t for t, _, _ in data["val"]], [y for _, y, _ in data["val"]]
    majority = Counter(train_y).most_common(1)[0][0]
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    clf = LogisticRegression(max_iter=2000).fit(vec.fit_transform(train_x), train_y)
    tfidf = sum(p == y for p, y in zip(clf.predict(vec.transform(val_x)), val_y)) / len(val_y)
    return {"majority": sum(y == majority for y in val_y) / len(val_y), "tfidf_lr": tfidf}


LORA_PROBE = """
import json, re, time, torch, yaml
from scratchllm.model import GPT, ModelConfig
from scratchllm.finetune.lora import apply_lora

def rss_mb(field):
    return int(re.search(field + r':\\s+(\\d+)', open('/proc/self/status').read()).group(1)) / 1024

cfg = yaml.safe_load(open('conf/model/gpt2-124m.yaml')); cfg.pop('defaults', None)
cfg = {{k: v for k, v in cfg.items() if not str(k).startswith('_')}}
cfg.update({shape})
before_model = rss_mb('VmRSS')
model = GPT(ModelConfig.from_dict(cfg))
if {lora}: apply_lora(model, dict(rank=8, alpha=16, dropout=0.0, targets=['attn.qkv', 'attn.proj', 'mlp.fc', 'mlp.proj']))
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
x = torch.randint(0, model.config.vocab_size, ({batch}, {seq}))
open('/proc/self/clear_refs', 'w').write('5')  # resets VmHWM: the peak below is the training steps' own
times = []
for step in range({steps}):
    t = time.perf_counter()
    _, loss = model(x, x)
    loss.backward()
    opt.step()
    opt.zero_grad()
    times.append(time.perf_counter() - t)
print(json.dumps(dict(trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
                      step_s=sum(times[1:]) / max(1, len(times) - 1), base_rss_mb=before_model,
                      peak_rss_mb=rss_mb('VmHWM'))))
"""


def lora_vs_full(smoke: bool, batch: int) -> dict[str, dict]:
    shape = "dict(n_layer=2, n_embd=64, n_head=2, vocab_size=500, context_length=64)" if smoke else "{}"
    out = {}
    for name, lora in (("full", False), ("lora", True)):
        code = LORA_PROBE.format(shape=shape, lora=lora, batch=batch, seq=32 if smoke else 256,
                                 steps=3 if smoke else 4)
        # A fixed mmap threshold: every tensor over 128 KiB gets its own mapping, returned to the system when freed,
        # so RSS follows the live tensors (glibc's default raises the threshold after frees and keeps freed
        # blocks, which made the peak depend on the order of allocations rather than on what was alive).
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
        proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                              env=env)
        out[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


PARTS = ("sft", "classify", "dpo", "lora_vs_full")


def lr(value: float | None) -> list[str]:
    return [] if value is None else [f"optim.lr={value}"]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--init", help="a pretrained checkpoint (default: pretrain a nano char model first)")
    p.add_argument("--pretrain-steps", type=int, default=2000)
    p.add_argument("--steps", type=int, default=300, help="steps of each fine-tuning run")
    p.add_argument("--dpo-steps", type=int, default=None, help="steps of the DPO run (default: --steps)")
    for part in ("sft", "classify", "dpo"):
        p.add_argument(f"--{part}-lr", type=float, help=f"optim.lr of the {part} runs (default: the recipe's)")
    p.add_argument("--max-chars", type=int, default=60, help="data.builtin.max_chars of the SFT and DPO data: "
                   "each quoted speech clipped to this many characters")
    p.add_argument("--sft-mask", choices=("true", "false"), action="append",
                   help="run only this data.mask_prompt setting of the SFT part (default: both)")
    p.add_argument("--only", action="append", choices=PARTS, help="run only this part (repeatable)")
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    parts = args.only or list(PARTS)
    steps = 2 if args.smoke else args.steps
    dpo_steps = 2 if args.smoke else (args.dpo_steps or args.steps)
    sft_data = dict(per_play=4, val_per_play=4) if args.smoke else dict(per_play=200, val_per_play=50,
                                                                                    max_chars=args.max_chars)
    cls_data = dict(per_play=4, val_per_play=4) if args.smoke else dict(per_play=60, val_per_play=30)
    small = ["data.max_val_windows=8", "data.batch_size=4"] if args.smoke else []
    root = Path(tempfile.mkdtemp(prefix="bench_finetune_"))
    machine = machine_info("cpu")
    lines = [f"# Fine-tuning on the plays ({machine['date']}{', smoke sizes' if args.smoke else ''})", ""]
    lines += header_lines(machine, "python experiments/bench_finetune.py " + " ".join(argv or sys.argv[1:])) + [""]
    init = args.init
    if init is None and parts != ["lora_vs_full"]:
        pre_steps = 2 if args.smoke else args.pretrain_steps
        pre = ["model=nano", "tokenizer=char", "data=shakespeare", "model.context_length=256",
               "sample.max_new_tokens=0", f"trainer.max_steps={pre_steps}",
               f"trainer.val_check_interval={max(1, pre_steps // 4)}", *small]
        result, _, cmd = run(pre, root, "pretrain")
        init = result["last_checkpoint"]
        lines += [f"Start model: `{cmd}` (val loss {result['val_loss']:.3f}).", ""]
    elif init is not None:
        made_by = start_command(init)
        lines += [f"Start model: `--init {init}`" + (f", trained with `{made_by}`." if made_by else "."), ""]
    common = [f"init_from={init}", f"trainer.max_steps={steps}", f"trainer.val_check_interval={max(1, steps // 3)}",
              *small]
    builtin = [f"data.builtin.{k}={v}" for k, v in sft_data.items()]
    sft_ckpt = None
    if "sft" in parts:
        before = sft_accuracy(init, sft_data)
        lines += ["## Instruction tuning: who speaks next (held-out plays, exact match)", "",
                  f"{int(before['n'])} held-out questions from plays the start model never read; greedy reply, "
                  "exact match of the speaker's name.", "",
                  "| run | held-out accuracy | command |", "|---|---|---|",
                  f"| rule: the speaker two speeches back | {before['baseline_accuracy']:.3f} | |",
                  f"| start model, before tuning | {before['accuracy']:.3f} | |"]
        for mask in args.sft_mask or ("true", "false"):
            overrides = ["experiment=sft_plays", *common, *builtin, f"data.mask_prompt={mask}", *lr(args.sft_lr)]
            result, _, cmd = run(overrides, root, f"sft_{mask}")
            acc = sft_accuracy(result["last_checkpoint"], sft_data)
            sft_ckpt = sft_ckpt or result["last_checkpoint"]
            lines.append(f"| SFT, mask_prompt={mask} | {acc['accuracy']:.3f} | `{cmd}` |")
    if "classify" in parts:
        lines += classify_section([*common, *lr(args.classify_lr)], cls_data, root)
    if "dpo" in parts:
        lines += dpo_section(sft_ckpt or init, [*common, *lr(args.dpo_lr)], builtin, sft_data, dpo_steps, root)
    if "lora_vs_full" in parts:
        lines += lora_section(args.smoke)
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = ("_smoke" if args.smoke else "") + ("_" + "_".join(args.only) if args.only else "")
    out = RESULTS / f"finetune_{dt.date.today():%Y-%m-%d}{suffix}.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwritten: {out}")


def classify_section(common: list[str], cls_data: dict, root: Path) -> list[str]:
    base = classify_baselines(cls_data)
    lines = ["", "## Classification: genre of a passage (held-out plays)", "",
             "| run | held-out accuracy | trainable params | command |", "|---|---|---|---|",
             f"| majority class | {base['majority']:.3f} | | |",
             f"| TF-IDF + logistic regression (scikit-learn) | {base['tfidf_lr']:.3f} | | |"]
    cls_builtin = [f"data.builtin.{k}={v}" for k, v in cls_data.items()]
    for mode in ("head", "last_blocks", "all", "adapter"):
        extra = ["adapter=lora"] if mode == "adapter" else []
        result, run_dir, cmd = run(["experiment=classify_plays", *common, *cls_builtin, f"objective.trainable={mode}",
                                    *extra], root, f"classify_{mode}")
        acc = metrics_column(run_dir, "val/accuracy")[-1]
        lines.append(f"| {mode} | {acc:.3f} | {result.get('trainable_params', '')} | `{cmd}` |")
    return lines


def dpo_section(start: str, common: list[str], builtin: list[str], sft_data: dict, steps: int,
                root: Path) -> list[str]:
    every = max(1, steps // 4)
    keep = [o for o in common if not o.startswith(("init_from=", "trainer.max_steps=", "trainer.val_check_interval="))]
    overrides = ["experiment=dpo_plays", f"init_from={start}", f"trainer.max_steps={steps}",
                 f"trainer.val_check_interval={every}", *keep, *builtin]
    result, run_dir, cmd = run(overrides, root, "dpo")
    acc_by_step, margin_by_step = (metrics_by_step(run_dir, "val/reward_accuracy", steps),
                                   metrics_by_step(run_dir, "val/reward_margin", steps))
    logged = sorted(acc_by_step)
    accs, margins = [acc_by_step[k] for k in logged], [margin_by_step[k] for k in logged]
    wins = dpo_win_rate(result["last_checkpoint"], start, sft_data)
    lines = ["", "## DPO on who-speaks-next pairs (start: the masked SFT model; held-out pairs)", "",
             "At step 0 the policy is the reference: every margin is exactly 0, a tie (reward accuracy 0 counting "
             "only strict wins, 0.5 counting a tie as half). Validation on the held-out pairs every "
             f"{every} steps:", "",
             "| step | " + " | ".join(str(k) for k in logged) + " |",
             "|---|" + "---|" * len(accs),
             "| reward accuracy (chosen reward > rejected) | " + " | ".join(f"{a:.3f}" for a in accs) + " |",
             "| reward margin | " + " | ".join(f"{m:.4f}" for m in margins) + " |", "",
             f"Generated answers vs the start model on {int(wins['n'])} held-out prompts (greedy; judge: "
             "chrF(reply, chosen) − chrF(reply, rejected), higher wins, ties count half; "
             "`scratchllm.finetune.answers.win_rate` says why):", "",
             "| win rate | wins / ties / losses | exact match, DPO vs start | says the rejected name, DPO vs start |",
             "|---|---|---|---|",
             f"| {wins['win_rate']:.3f} | {int(wins['wins'])} / {int(wins['ties'])} / {int(wins['losses'])} "
             f"| {wins['exact_tuned']:.3f} vs {wins['exact_start']:.3f} "
             f"| {wins['rejected_tuned']:.3f} vs {wins['rejected_start']:.3f} |",
             "", f"Command: `{cmd}`"]
    return lines


def lora_section(smoke: bool) -> list[str]:
    lines = ["", f"## LoRA (rank 8, all block linears) vs full fine-tuning, {'tiny' if smoke else 'gpt2-124m'} "
             "shapes, CPU, fp32, AdamW", "",
             "Step time: meaningful only on an otherwise idle machine (the load average before is in the header). "
             "Peak memory: the process's peak RSS during the training steps (VmHWM, reset after the model and "
             "optimizer were built), and the same minus the RSS just before the model was built (what the model, "
             "gradients, optimizer state and activations take), with glibc's mmap threshold fixed at 128 KiB so "
             "that freed tensors leave RSS. Sequences of 256 tokens.", "",
             "| batch | | trainable params | step s | peak RSS MB | peak above the runtime MB |",
             "|---|---|---|---|---|---|"]
    ratios = []
    for batch in (1, 4):
        cost = lora_vs_full(smoke, batch)
        for name, c in cost.items():
            lines.append(f"| {batch} | {name} | {c['trainable']:,} | {c['step_s']:.3f} | {c['peak_rss_mb']:.0f} "
                         f"| {c['peak_rss_mb'] - c['base_rss_mb']:.0f} |")
        above = ((cost["lora"]["peak_rss_mb"] - cost["lora"]["base_rss_mb"])
                 / (cost["full"]["peak_rss_mb"] - cost["full"]["base_rss_mb"]))
        ratios.append(f"batch {batch}: {cost['lora']['peak_rss_mb'] / cost['full']['peak_rss_mb']:.0%} "
                      f"(whole process), {above:.0%} (above the runtime)")
    lines += ["", "LoRA peak memory as a share of full fine-tuning's: " + "; ".join(ratios) + ". Activations are the "
              "same for both (LoRA still back-propagates through every layer), so the share grows with batch × "
              "sequence; what LoRA saves is the weights' gradients and AdamW's two moments (12 bytes a parameter)."]
    return lines


if __name__ == "__main__":
    main()
