"""Fine-tuning results on the built-in plays data: SFT (masked vs unmasked), classification modes, DPO, and LoRA
vs full fine-tuning cost on gpt2-124m shapes. Every training is one ``python -m scratchllm.train`` process.

    python experiments/bench_finetune.py                        # pretrains a nano char model first (~minutes)
    python experiments/bench_finetune.py --init logs/train/runs/<time>/checkpoints/last.ckpt
    python experiments/bench_finetune.py --smoke                # tiny sizes: checks the script, numbers mean nothing

Writes experiments/results/finetune_<date>[_smoke].md: each row with the command that produced it, beside its
baseline (the "speaker two speeches back" rule for SFT, the majority class and TF-IDF + logistic regression for
classification, 0.5 / 0 reward accuracy / margin at the start of DPO). Needs scikit-learn for the TF-IDF baseline.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
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


def run(overrides: list[str], root: Path, tag: str) -> tuple[dict, Path, str]:
    run_dir = root / tag
    result = train_in_subprocess([*overrides, f"paths.root_dir={root}", "logger=csv"], run_dir)
    return result, run_dir, f"{PY} {' '.join(shlex.quote(o) for o in overrides)}"


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
import json, resource, time, torch, yaml
from scratchllm.model import GPT, ModelConfig
from scratchllm.finetune.lora import apply_lora
cfg = yaml.safe_load(open('conf/model/gpt2-124m.yaml')); cfg.pop('defaults', None)
cfg = {{k: v for k, v in cfg.items() if not str(k).startswith('_')}}
cfg.update({shape})
model = GPT(ModelConfig.from_dict(cfg))
if {lora}: apply_lora(model, dict(rank=8, alpha=16, targets=['attn.qkv', 'attn.proj', 'mlp.fc', 'mlp.proj']))
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
x = torch.randint(0, model.config.vocab_size, ({batch}, {seq}))
times = []
for step in range({steps}):
    t = time.perf_counter()
    _, loss = model(x, x)
    loss.backward()
    opt.step()
    opt.zero_grad()
    times.append(time.perf_counter() - t)
print(json.dumps(dict(trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
                      step_s=sum(times[1:]) / max(1, len(times) - 1),
                      peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))
"""


def lora_vs_full(smoke: bool) -> dict[str, dict]:
    shape = "dict(n_layer=2, n_embd=64, n_head=2, vocab_size=500, context_length=64)" if smoke else "{}"
    out = {}
    for name, lora in (("full", False), ("lora", True)):
        code = LORA_PROBE.format(shape=shape, lora=lora, batch=1 if smoke else 4, seq=32 if smoke else 256,
                                 steps=3 if smoke else 6)
        proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
        out[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--init", help="a pretrained checkpoint (default: pretrain a nano char model first)")
    p.add_argument("--pretrain-steps", type=int, default=2000)
    p.add_argument("--steps", type=int, default=300, help="steps of each fine-tuning run")
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    steps = 2 if args.smoke else args.steps
    sft_data = dict(per_play=4, val_per_play=4) if args.smoke else dict(per_play=200, val_per_play=50)
    cls_data = dict(per_play=4, val_per_play=4) if args.smoke else dict(per_play=60, val_per_play=30)
    small = ["data.max_val_windows=8", "data.batch_size=4"] if args.smoke else []
    root = Path(tempfile.mkdtemp(prefix="bench_finetune_"))
    machine = machine_info("cpu")
    lines = [f"# Fine-tuning on the plays ({machine['date']}{', smoke sizes' if args.smoke else ''})", ""]
    lines += header_lines(machine, "python experiments/bench_finetune.py " + " ".join(argv or sys.argv[1:])) + [""]
    init = args.init
    if init is None:
        pre_steps = 2 if args.smoke else args.pretrain_steps
        pre = ["model=nano", "tokenizer=char", "data=shakespeare", "model.context_length=256",
               "sample.max_new_tokens=0", f"trainer.max_steps={pre_steps}",
               f"trainer.val_check_interval={max(1, pre_steps // 4)}", *small]
        result, _, cmd = run(pre, root, "pretrain")
        init = result["last_checkpoint"]
        lines += [f"Start model: `{cmd}` (val loss {result['val_loss']:.3f}).", ""]
    common = [f"init_from={init}", f"trainer.max_steps={steps}", f"trainer.val_check_interval={max(1, steps // 3)}",
              *small]
    builtin = [f"data.builtin.{k}={v}" for k, v in sft_data.items()]
    before = sft_accuracy(init, sft_data)
    lines += ["## Instruction tuning: who speaks next (held-out plays, exact match)", "",
              "| run | held-out accuracy | command |", "|---|---|---|",
              f"| rule: the speaker two speeches back | {before['baseline_accuracy']:.3f} | |",
              f"| start model, before tuning | {before['accuracy']:.3f} | |"]
    sft_ckpt = None
    for mask in ("true", "false"):
        overrides = ["experiment=sft_plays", *common, *builtin, f"data.mask_prompt={mask}"]
        result, _, cmd = run(overrides, root, f"sft_{mask}")
        acc = sft_accuracy(result["last_checkpoint"], sft_data)
        sft_ckpt = sft_ckpt or result["last_checkpoint"]
        lines.append(f"| SFT, mask_prompt={mask} | {acc['accuracy']:.3f} | `{cmd}` |")
    base = classify_baselines(cls_data)
    lines += ["", "## Classification: genre of a passage (held-out plays)", "",
              "| run | held-out accuracy | trainable params | command |", "|---|---|---|---|",
              f"| majority class | {base['majority']:.3f} | | |",
              f"| TF-IDF + logistic regression (scikit-learn) | {base['tfidf_lr']:.3f} | | |"]
    cls_builtin = [f"data.builtin.{k}={v}" for k, v in cls_data.items()]
    for mode in ("head", "last_blocks", "all", "adapter"):
        extra = ["+adapter=lora"] if mode == "adapter" else []
        result, run_dir, cmd = run(["experiment=classify_plays", *common, *cls_builtin, f"objective.trainable={mode}",
                                    *extra], root, f"classify_{mode}")
        acc = metrics_column(run_dir, "val/accuracy")[-1]
        lines.append(f"| {mode} | {acc:.3f} | {result.get('trainable_params', '')} | `{cmd}` |")
    result, run_dir, cmd = run(["experiment=dpo_plays", f"init_from={sft_ckpt}", *common[1:], *builtin], root, "dpo")
    accs, margins = metrics_column(run_dir, "val/reward_accuracy"), metrics_column(run_dir, "val/reward_margin")
    lines += ["", "## DPO on who-speaks-next pairs (start: the masked SFT model; held-out pairs)", "",
              "| | first validation | last validation |", "|---|---|---|",
              f"| reward accuracy | {accs[0]:.3f} | {accs[-1]:.3f} |",
              f"| reward margin | {margins[0]:.4f} | {margins[-1]:.4f} |",
              "", f"Command: `{cmd}`"]
    cost = lora_vs_full(args.smoke)
    lines += ["", f"## LoRA (rank 8, all block linears) vs full fine-tuning, {'tiny' if args.smoke else 'gpt2-124m'} "
              "shapes, CPU", "", "| | trainable params | step s | peak RSS MB |", "|---|---|---|---|"]
    for name, c in cost.items():
        lines.append(f"| {name} | {c['trainable']:,} | {c['step_s']:.3f} | {c['peak_rss_mb']:.0f} |")
    ratio = cost["lora"]["peak_rss_mb"] / cost["full"]["peak_rss_mb"]
    lines += ["", f"LoRA peak memory = {ratio:.0%} of full fine-tuning's (whole process RSS, model included)."]
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"finetune_{dt.date.today():%Y-%m-%d}{'_smoke' if args.smoke else ''}.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
