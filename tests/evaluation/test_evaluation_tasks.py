"""Task items, their scoring on a model made to know the answers, the built-in task and the JSONL schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from scratchllm.errors import ConfigError, DataError
from scratchllm.evaluation.builtin import N_CHOICES, builtin_task, next_line_items, next_word_items, spelling_items
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


def test_a_generation_task_packs_a_bf16_model_once(alphabet_tokenizer, monkeypatch):
    """Every answer of a task runs in one decode session: the shortcuts (and a bf16 model's packed weights) are
    made for the first item and reused, not remade per item; the answers are those of the float32 model."""
    import scratchllm.generation.fastpath as fastpath

    made = []

    class Counted(fastpath.DecodeShortcuts):
        def __init__(self, model):
            made.append(model)
            super().__init__(model)

    monkeypatch.setattr(fastpath, "DecodeShortcuts", Counted)
    model = bigram_gpt(alphabet_tokenizer).to(torch.bfloat16)
    gen = run_task(model, alphabet_tokenizer, Task("gen", "generation", list(GEN_ITEMS)))
    assert len(made) == 1
    assert gen["exact_match"] == pytest.approx(2 / 3)


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


def test_accuracies_carry_lm_evals_standard_error(alphabet_tokenizer):
    from scratchllm.evaluation.runner import stderr

    assert stderr(0.25, 200) == pytest.approx((0.25 * 0.75 / 199) ** 0.5)
    mc = run_task(bigram_gpt(alphabet_tokenizer), alphabet_tokenizer, Task("mc", "multiple_choice", CHOICE_ITEMS))
    assert mc["acc_stderr"] == mc["acc_norm_stderr"] == 0.0


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


def test_builtin_word_tasks_are_well_formed():
    for name in ("shakespeare_next_word", "shakespeare_spelling"):
        a, b = builtin_task(name, 40, seed=3), builtin_task(name, 40, seed=3)
        assert a.items == b.items and a.kind == "multiple_choice" and "julius-caesar" in a.source
        for item in a.items:
            assert len(item.choices) == N_CHOICES == len({c.lower() for c in item.choices})
            assert item.context.endswith(" ") and not item.context.endswith("\n ")  # mid-line, before a word
            assert all(c.isalpha() or "'" in c for c in item.choices)
    for item in builtin_task("shakespeare_spelling", 40, seed=3).items:
        assert {"".join(sorted(c)) for c in item.choices} == {"".join(sorted(item.choices[item.gold]))}


def test_no_item_starts_a_speech_whatever_the_speakers_case():
    """``render.py`` writes ``Clown:`` and ``First Lord:`` as well as ``BERTRAM:``: a line after a speaker's name
    is never asked about (its context would end with the name), nor is a name a choice."""
    play = "\n".join(["BERTRAM:", "Madam, I desire your holy wishes.", "", "First Lord:",
                      "Noble sir, we shall attend your pleasure here", "and bid you welcome to the house of France",
                      "", "Clown:", "A prodigal course is my lady's fortune now", ""])
    (item,) = next_line_items([play], 1, seed=0)  # the one line in this play that follows a spoken line
    assert item.choices[item.gold] == "and bid you welcome to the house of France\n"
    assert set(item.choices) == {line + "\n" for line in play.split("\n") if len(line) >= 20}
    with pytest.raises(ConfigError, match="more items"):
        next_line_items([play], 2, seed=0)


def test_word_items_ask_for_the_word_that_follows():
    play = "A:\n" + "\n".join(f"the quick brown fox jumps over lazy dogs number {i}" for i in range(30)) + "\n"
    for item in next_word_items([play], 20, seed=0):
        words = item.context.split("\n")[-1].split()
        sentence = "the quick brown fox jumps over lazy dogs number".split()
        assert item.choices[item.gold] == sentence[len(words)]
    for item in spelling_items([play], 20, seed=0):
        assert item.choices[item.gold] in ("quick", "brown", "jumps", "number")
    with pytest.raises(ConfigError, match="more items"):
        spelling_items([play], 1000, seed=0)


def test_word_distractors_are_as_common_as_the_answer():
    """Picking the commonest (or the shortest) word must score chance: the task measures the use of context."""
    from collections import Counter

    from scratchllm.evaluation.builtin import MIN_WORD, held_out_plays, word_sites

    texts, _ = held_out_plays()
    freq = Counter(w for _, _, w in word_sites(texts, MIN_WORD))
    items = builtin_task("shakespeare_next_word", 2000, seed=0).items
    commonest = sum(max(range(N_CHOICES), key=lambda i: freq[it.choices[i]]) == it.gold for it in items) / 2000
    shortest = sum(min(range(N_CHOICES), key=lambda i: len(it.choices[i])) == it.gold for it in items) / 2000
    # a guesser's 2000-item accuracy has a standard deviation of 0.0097: ± 0.04 is four of them
    assert abs(commonest - 0.25) < 0.04 and abs(shortest - 0.25) < 0.04, (commonest, shortest)


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


@pytest.mark.slow
def test_a_model_trained_on_the_plays_spells_the_held_out_plays():
    """Train a small char GPT (plain torch, 300 steps of 32 × 64 characters) on the default corpus's
    training plays, then ask ``shakespeare_spelling`` about the held-out plays: chance is 25%, and the same model
    before training stays near it.

    The margin: over 200 items a guesser's accuracy has a standard deviation of sqrt(0.25 · 0.75 / 200) = 0.031,
    so 0.40 is five of them above chance and 0.60 eleven. Measured (2026-12-02): 0.875 after these 300 steps
    (loss 2.37), 0.265 untrained; the reference nano model reaches 0.988 after 3000 steps
    (experiments/results/evaluate_2026-12-02.md)."""
    import torch

    from scratchllm.data.corpora.shakespeare import ShakespearePlays
    from scratchllm.model import GPT, ModelConfig
    from scratchllm.tokenizers import CharTokenizer

    train = "\n".join(ShakespearePlays().splits()["train"])
    task = builtin_task("shakespeare_spelling", 200, seed=0)
    seen = {c for item in task.items for c in item.context + "".join(item.choices)}
    tok = CharTokenizer(sorted(set(train) | seen))
    data = torch.tensor(tok.encode(train))
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=tok.vocab_size, context_length=64, n_layer=2, n_head=4, n_embd=64))
    before = run_task(model.eval(), tok, task, batch_size=32)
    model.train()
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(300):
        starts = torch.randint(0, len(data) - 65, (32,))
        batch = torch.stack([data[s : s + 65] for s in starts])
        _, loss = model(batch[:, :-1], targets=batch[:, 1:])
        optim.zero_grad()
        loss.backward()
        optim.step()
    after = run_task(model.eval(), tok, task, batch_size=32)
    assert before["random"] == 0.25 and before["acc"] < 0.40, before
    assert after["acc"] >= 0.60 and after["acc_norm"] == after["acc"], after  # same letters, same length


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
