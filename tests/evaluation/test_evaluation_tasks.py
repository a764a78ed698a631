"""Task items, their scoring on a model made to know the answers, the built-in task and the JSONL schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scratchllm.errors import ConfigError, DataError
from scratchllm.evaluation.builtin import N_CHOICES, builtin_task, next_line_items
from scratchllm.evaluation.runner import core_score, run_task, score_choices
from scratchllm.evaluation.tasks import ChatItem, ChoiceItem, GenerationItem, Task, load_jsonl_task
from tests.evaluation.conftest import bigram_gpt

# Under the bigram model "abcdefgh\n" each character is followed by the next one.
CHOICE_ITEMS = [
    ChoiceItem("ab", ("cd", "ce", "xyz"), 0),
    ChoiceItem("fg", ("a", "h\nab", "hx"), 1),  # the longest choice is right: every character fits
    ChoiceItem("h", ("xb", "yb", "\na", "bc"), 2),
]
GEN_ITEMS = [GenerationItem("de", ("fgh",)), GenerationItem("a", (" bcdefgh ", "zz")), GenerationItem("f", ("g",))]


def test_a_model_that_knows_the_answers_scores_full_marks(alphabet_tokenizer):
    model = bigram_gpt(alphabet_tokenizer)
    mc = run_task(model, alphabet_tokenizer, Task("mc", "multiple_choice", list(CHOICE_ITEMS)), batch_size=2)
    assert mc["acc"] == mc["acc_norm"] == 1.0
    assert mc["random"] == pytest.approx((1 / 3 + 1 / 3 + 1 / 4) / 3)
    assert mc["centered"] == pytest.approx(1.0)
    gen = run_task(model, alphabet_tokenizer, Task("gen", "generation", list(GEN_ITEMS)))
    # "de" → "fgh" then a newline (the stop string); "a" → "bcdefgh" (an answer with spaces around it); "f" → "gh"
    assert gen["exact_match"] == pytest.approx(2 / 3)
    assert core_score({"mc": mc, "gen": gen}) == pytest.approx((1.0 + 2 / 3) / 2)


def test_wrong_golds_score_zero(alphabet_tokenizer):
    model = bigram_gpt(alphabet_tokenizer)
    wrong = [ChoiceItem(i.context, i.choices, (i.gold + 1) % len(i.choices)) for i in CHOICE_ITEMS]
    result = run_task(model, alphabet_tokenizer, Task("mc", "multiple_choice", wrong))
    assert result["acc"] == result["acc_norm"] == 0.0
    assert result["centered"] < 0


def test_acc_norm_divides_by_characters():
    items = [ChoiceItem("q", ("a", "bbbb"), 1)]
    # raw: -2 beats -4; per character: -4/4 = -1 beats -2/1
    assert score_choices(items, [[-2.0, -4.0]]) == {"acc": 0.0, "acc_norm": 1.0, "random": 0.5}


def test_builtin_next_line_is_deterministic_and_well_formed():
    a = builtin_task("shakespeare_next_line", 30, seed=3)
    b = builtin_task("shakespeare_next_line", 30, seed=3)
    c = builtin_task("shakespeare_next_line", 30, seed=4)
    assert a.items == b.items and a.items != c.items
    assert a.kind == "multiple_choice" and "julius-caesar" in a.source
    for item in a.items:
        assert len(item.choices) == N_CHOICES == len(set(item.choices))
        assert item.context.endswith("\n") and all(c.endswith("\n") for c in item.choices)


def test_next_line_items_pick_the_line_that_follows():
    play = "\n".join(["A:", *[f"line number {i:02d} of the speech" for i in range(12)], ""])
    items = next_line_items([play], 5, seed=0)
    for item in items:
        last = item.context.splitlines()[-1]
        assert item.choices[item.gold] == f"line number {int(last.split()[2]) + 1:02d} of the speech\n"
    with pytest.raises(ConfigError, match="more items"):
        next_line_items([play], 100, seed=0)


def write(path: Path, records) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return path


def test_jsonl_schema(tmp_path):
    mc = load_jsonl_task(write(tmp_path / "quiz.jsonl", [{"context": "Q", "choices": [" a", " b"], "gold": 1}, ""]))
    assert (mc.name, mc.kind, mc.items) == ("quiz", "multiple_choice", [ChoiceItem("Q", (" a", " b"), 1)])
    gen = load_jsonl_task(write(tmp_path / "gen.jsonl", [{"prompt": "2+2=", "answer": ["4", "four"],
                                                         "stop": "\n\n", "max_new_tokens": 3}]))
    assert gen.items == [GenerationItem("2+2=", ("4", "four"), ("\n\n",), 3)]


@pytest.mark.parametrize("records, message", [
    (["{not json"], r"bad\.jsonl:1: not valid JSON"),
    ([{"context": "Q", "choices": ["a"], "gold": 0}], "at least two"),
    ([{"context": "Q", "choices": ["a", "b"], "gold": 2}], "index of the right choice, 0..1"),
    ([{"question": "Q"}], "needs 'choices'"),
    ([{"prompt": "Q", "answer": 4}], "'answer' a string"),
    ([{"prompt": "Q", "answer": "a"}, {"context": "Q", "choices": ["a", "b"], "gold": 0}], "mixes"),
    ([""], "holds no items"),
])
def test_jsonl_errors_name_the_line_and_the_fix(tmp_path, records, message):
    with pytest.raises(DataError, match=message) as err:
        load_jsonl_task(write(tmp_path / "bad.jsonl", records))
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_a_model_trained_on_the_source_beats_chance():
    """Train a tiny GPT (plain torch, ~300 steps) on a 'play' of eight lines said over and over in order, then ask
    "which line comes next" about it: chance is 25%, the trained model must reach 75% (acc_norm)."""
    import torch

    from scratchllm.model import GPT, ModelConfig
    from scratchllm.tokenizers import CharTokenizer

    lines = ["A:", "when shall we three meet again", "in thunder lightning or in rain", "when the hurly burly done",
             "when the battle lost and won", "that will be ere set of sun", "where the place upon the heath",
             "there to meet with macbeth", "fair is foul and foul is fair"]
    play = "\n".join(lines + lines[1:] * 40) + "\n"
    tok = CharTokenizer(sorted(set(play)))
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=tok.vocab_size, context_length=48, n_layer=2, n_head=2, n_embd=48))
    data = torch.tensor(tok.encode(play))
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(300):
        starts = torch.randint(0, len(data) - 49, (16,))
        batch = torch.stack([data[s : s + 49] for s in starts])
        _, loss = model(batch[:, :-1], targets=batch[:, 1:])
        optim.zero_grad()
        loss.backward()
        optim.step()
    model.eval()
    task = Task("macbeth", "multiple_choice", next_line_items([play], 40, seed=0))
    result = run_task(model, tok, task)
    assert result["random"] == 0.25 and result["acc_norm"] >= 0.75, result


def test_chat_items_are_answered_through_the_chat_template():
    """A bigram model over a char vocabulary with the chat tokens: after the assistant header's newline it writes
    "ab" then <|im_end|>, so a conversation whose answer is "ab" scores 1 and one whose answer is "b" scores 0."""
    from scratchllm.finetune.chat import IM_END, add_chat_tokens
    from scratchllm.tokenizers import CharTokenizer

    tok = CharTokenizer(sorted(set("systemuserassistant\nabefir? ")))
    add_chat_tokens(tok)
    a, b, newline = (tok.encode(c)[0] for c in "ab\n")
    model = bigram_gpt(tok, [(newline, a), (a, b), (b, tok.special_tokens[IM_END])])
    items = [ChatItem((("user", "ab?"),), "ab"), ChatItem((("system", "be brief"), ("user", "a")), " b ")]
    result = run_task(model, tok, Task("chat", "chat", items))
    assert result["exact_match"] == 0.5 and result["random"] == 0.0


def test_chat_jsonl_and_the_builtin_held_out_split(tmp_path):
    turns = [{"role": "user", "content": "Who?"}, {"role": "assistant", "content": "HAMLET"}]
    task = load_jsonl_task(write(tmp_path / "c.jsonl", [{"messages": turns, "max_new_tokens": 4}]))
    assert task.kind == "chat" and task.items == [ChatItem((("user", "Who?"),), "HAMLET", 4)]
    with pytest.raises(DataError, match="no assistant turn"):
        load_jsonl_task(write(tmp_path / "d.jsonl", [{"messages": turns[:1]}]))
    held_out = builtin_task("plays_who_speaks_next", 3, seed=0)
    assert held_out.kind == "chat" and len(held_out.items) == 3
    assert all(item.messages[-1][1].startswith("Who speaks next?") for item in held_out.items)


def test_a_chat_task_needs_a_model_with_chat_tokens(alphabet_tokenizer):
    from scratchllm.errors import InputError

    task = Task("chat", "chat", [ChatItem((("user", "a"),), "b")])
    with pytest.raises(InputError, match="no chat markers"):
        run_task(bigram_gpt(alphabet_tokenizer), alphabet_tokenizer, task)
