"""objective=dpo: the loss and rewards against the paper's formula, the reference, the data, a run that learns."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from scratchllm.errors import DataError
from scratchllm.finetune import ChatDataModule
from scratchllm.finetune.preference import preference_pairs, read_pairs
from scratchllm.finetune.start import grow_to, load_start
from scratchllm.model import GPT, ModelConfig
from scratchllm.training.objectives_dpo import DirectPreference, dpo_loss, sequence_logps


def test_loss_and_rewards_equal_the_papers_formula_on_fixed_logps() -> None:
    pc, pr, rc, rr = [-3.0, -10.0, -4.5], [-5.0, -9.0, -4.0], [-4.0, -9.5, -4.5], [-4.0, -9.5, -6.0]
    beta = 0.5
    loss, m = dpo_loss(*(torch.tensor(v, dtype=torch.float64) for v in (pc, pr, rc, rr)), beta)
    # L = -E log σ(β[(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))]), written out by hand
    margins = [beta * ((a - c) - (b - d)) for a, b, c, d in zip(pc, pr, rc, rr)]
    expected = sum(-math.log(1 / (1 + math.exp(-x))) for x in margins) / 3
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    assert m["reward_chosen"].item() == pytest.approx(sum(beta * (a - c) for a, c in zip(pc, rc)) / 3)
    assert m["reward_rejected"].item() == pytest.approx(sum(beta * (b - d) for b, d in zip(pr, rr)) / 3)
    assert m["reward_margin"].item() == pytest.approx(sum(margins) / 3)
    assert m["reward_accuracy"].item() == pytest.approx(sum(x > 0 for x in margins) / 3)


def test_sequence_logps_sum_the_answer_tokens_only() -> None:
    model = GPT(ModelConfig(vocab_size=11, context_length=8, n_layer=1, n_head=2, n_embd=8)).eval()
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    labels = torch.tensor([[-100, -100, 4, 5, 6]])
    logps = torch.log_softmax(model(ids)[0], -1)[0]
    assert sequence_logps(model, ids, labels).item() == pytest.approx(
        (logps[2, 4] + logps[3, 5] + logps[4, 6]).item(), abs=1e-5)


def test_preference_files_and_errors(tmp_path: Path) -> None:
    f = tmp_path / "prefs.jsonl"
    f.write_text(json.dumps({"prompt": "Who?", "chosen": "HAMLET", "rejected": "OPHELIA"}) + "\n"
                 + json.dumps({"prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}],
                               "chosen": "a", "rejected": "b"}) + "\n")
    pairs = read_pairs(f)
    assert pairs[0][0][-1] == {"role": "assistant", "content": "HAMLET"} and pairs[0][1][:-1] == pairs[0][0][:-1]
    assert pairs[1][0][0]["role"] == "system"
    f.write_text(json.dumps({"prompt": "Who?", "chosen": "HAMLET"}) + "\n")
    with pytest.raises(DataError, match=r"prefs.jsonl:1: field 'rejected' must be a string"):
        read_pairs(f)


def test_builtin_pairs_reject_a_plausible_wrong_speaker() -> None:
    pairs = preference_pairs("who_speaks_next", per_play=3, val_per_play=3)
    chosen, rejected = pairs["val"][0]
    assert chosen[:-1] == rejected[:-1] and chosen[-1]["content"] != rejected[-1]["content"]
    assert rejected[-1]["content"] in chosen[1]["content"]  # a speaker of the quoted exchange


def test_a_tiny_dpo_run_separates_chosen_from_rejected(start_ckpt: Path) -> None:
    model, tokenizer = load_start(str(start_ckpt))
    data = ChatDataModule(builtin=dict(per_play=2, val_per_play=2), batch_size=8, context_length=256,
                          preference=True)
    data.use_tokenizer(tokenizer)
    data.setup("fit")
    grow_to(model, data.tokenizer)
    reference = GPT(model.config)
    reference.load_state_dict(model.state_dict())
    objective = DirectPreference(beta=0.1)
    objective.reference = reference
    batch = next(iter(data.train_dataloader()))
    assert batch["input_ids"].shape[0] == 2 * int(batch["pairs"])
    first = objective(model, batch)
    assert first.loss.item() == pytest.approx(math.log(2), abs=1e-6)  # policy == reference
    assert first.metrics["reward_margin"].item() == pytest.approx(0.0, abs=1e-6)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(10):
        out = objective(model, batch)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    out = objective(model, batch)
    assert out.loss.item() < first.loss.item() - 0.1
    assert out.metrics["reward_margin"].item() > 0.5 and out.metrics["reward_accuracy"].item() > 0.8
    assert all(p.grad is None for p in reference.parameters())  # the reference is never trained


@pytest.mark.slow
def test_dpo_recipe_from_a_checkpoint_keeps_its_reference(start_ckpt: Path, tmp_path: Path) -> None:
    from scratchllm import checkpoint
    from tests.finetune.test_sft import run

    train = run("-m", "scratchllm.train", "experiment=dpo_plays", f"init_from={start_ckpt}", "trainer.max_steps=3",
                "trainer.val_check_interval=3", "data.batch_size=4", "data.max_val_windows=4",
                "data.builtin.per_play=2", "logger=csv", cwd=tmp_path)
    assert train.returncode == 0, train.stderr[-3000:]
    result = json.loads(next(line for line in train.stdout.splitlines() if line.startswith("result: "))[8:])
    saved = checkpoint.load(result["last_checkpoint"])
    assert checkpoint.describe(saved).objective["name"] == "dpo"
    start_file = checkpoint.load(start_ckpt)
    start, vocab = checkpoint.model_state(start_file), checkpoint.describe(start_file).model["vocab_size"]
    reference = {k[len("reference."):]: v for k, v in saved["state_dict"].items() if k.startswith("reference.")}
    # the reference is the starting model (the chat markers took padding rows of the vocabulary: compare the rest)
    for name, value in start.items():
        rows = vocab if name in ("tok_emb.weight", "lm_head.weight") else value.shape[0]
        torch.testing.assert_close(reference[name][:rows], value[:rows], rtol=0, atol=0)
    metrics = (tmp_path / "logs").rglob("metrics.csv")
    assert "val/reward_accuracy" in next(metrics).read_text().splitlines()[0]


@pytest.mark.slow  # importing trl (and transformers) takes most of its time
def test_loss_rewards_and_margins_equal_trls_loss_on_fixed_logps() -> None:
    """TRL's own DPO loss code (``DPOTrainer._compute_loss``, loss_type sigmoid, standard reverse-KL DPO) run on
    the same fixed log-probabilities: the policy's come from a stand-in model, the reference's as TRL's
    precomputed ones. Its loss, rewards, margins and reward accuracy equal ours."""
    from collections import defaultdict
    from types import SimpleNamespace

    pytest.importorskip("trl")
    from trl.trainer.dpo_trainer import DPOTrainer

    pc, pr, rc, rr = ([-3.0, -10.0, -4.5, -7.25], [-5.0, -9.0, -4.0, -7.0], [-4.0, -9.5, -4.5, -6.0],
                      [-4.0, -9.5, -6.0, -8.5])
    beta = 0.3
    policy = torch.tensor(pc + pr, dtype=torch.float64)  # TRL's batch: the chosen rows, then the rejected rows

    class FixedLogps(torch.nn.Module):
        """Each row's completion is one token whose log-probability is that row's summed log-prob."""

        def forward(self, **_: object) -> SimpleNamespace:
            n = policy.shape[0]
            return SimpleNamespace(log_probs=policy.unsqueeze(1), entropy=torch.zeros(n, 1),
                                   mean_logits=torch.zeros(n, 1), is_top1=torch.zeros(n, 1, dtype=torch.bool))

    accelerator = SimpleNamespace(device="cpu", gather=lambda t: t, gather_for_metrics=lambda t: t)
    trainer = SimpleNamespace(
        model=FixedLogps(), accelerator=accelerator, aux_loss_enabled=False, ld_alpha=None,
        precompute_ref_logps=True, f_divergence_type="reverse_kl", loss_types=["sigmoid"], loss_weights=[1.0],
        beta=beta, use_weighting=False, label_smoothing=0.0, _metrics={"train": defaultdict(list)},
        _total_train_tokens=0, _tp_size=1)
    n = len(pc)
    inputs = {"input_ids": torch.zeros(2 * n, 2, dtype=torch.long),
              "attention_mask": torch.ones(2 * n, 2, dtype=torch.long),
              "completion_mask": torch.tensor([[0, 1]] * (2 * n)),
              "ref_chosen_logps": torch.tensor(rc, dtype=torch.float64),
              "ref_rejected_logps": torch.tensor(rr, dtype=torch.float64)}
    trl_loss = DPOTrainer._compute_loss(trainer, trainer.model, inputs, return_outputs=False)
    trl = trainer._metrics["train"]

    ours, m = dpo_loss(*(torch.tensor(v, dtype=torch.float64) for v in (pc, pr, rc, rr)), beta)
    assert ours.item() == pytest.approx(trl_loss.item(), abs=1e-12)
    assert m["reward_chosen"].item() == pytest.approx(trl["rewards/chosen"][0], abs=1e-12)
    assert m["reward_rejected"].item() == pytest.approx(trl["rewards/rejected"][0], abs=1e-12)
    assert m["reward_margin"].item() == pytest.approx(trl["rewards/margins"][0], abs=1e-12)
    assert m["reward_accuracy"].item() == pytest.approx(trl["rewards/accuracies"][0], abs=1e-12)
    assert 0 < m["reward_accuracy"].item() < 1  # the fixed values hold wins and losses: the check means something


def test_the_win_rate_judge_is_chrf_closer_to_chosen_than_rejected() -> None:
    from scratchllm.finetune.answers import chrf, preference_score

    assert chrf("HAMLET", "HAMLET") == 1.0 and chrf("HAMLET", "OPHELIA") < 0.1 and chrf("", "HAMLET") == 0.0
    assert 0.3 < chrf("HAMLE", "HAMLET") < 1.0  # a near miss gets partial credit, unlike exact match
    assert chrf("LORD HAMLET", "LORDHAMLET") == 1.0  # spaces are ignored
    assert preference_score("HAMLET", "HAMLET", "HORATIO") > 0 > preference_score("HORATIO", "HAMLET", "HORATIO")
    assert abs(preference_score("GHOST", "HAMLET", "HORATIO")) < 0.1  # neither: about even
