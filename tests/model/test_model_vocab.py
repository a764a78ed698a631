"""grow_vocab: new ids for new special tokens, with the old model's outputs untouched."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from scratchllm.errors import ConfigError, InputError
from scratchllm.model import GPT, ModelConfig
from scratchllm.model.vocab import grow_vocab
from scratchllm.tokenizers import CharTokenizer, tokenizer_from_dict

CHAT = ["<|im_start|>", "<|im_end|>", "<|pad|>"]


def _model(tiny, vocab_size: int, tied: bool, dtype: torch.dtype = torch.float32) -> GPT:
    torch.manual_seed(0)
    return GPT(tiny(vocab_size=vocab_size, tie_embeddings=tied, context_length=64)).to(dtype).eval()


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize(
    ("old", "new", "dtype"),
    [
        (65, 70, torch.float32),  # the new ids take padding rows (128 either way)
        (65, 130, torch.float32),  # the padding runs out: 128 -> 192 rows
        (64, 65, torch.float32),  # no padding at all before: 64 -> 128 rows
        (65, 200, torch.bfloat16),
    ],
)
def test_old_logits_exact_new_rows_mean(tiny, tied: bool, old: int, new: int, dtype: torch.dtype) -> None:
    model = _model(tiny, old, tied, dtype)
    idx = torch.randint(0, old, (2, 12), generator=torch.Generator().manual_seed(1))
    targets = torch.randint(0, old, (2, 12), generator=torch.Generator().manual_seed(2))
    emb, head = model.tok_emb.weight.detach().clone(), model.lm_head.weight.detach().clone()
    with torch.no_grad():
        logits_before, loss_before = model(idx, targets)
    config_before = model.config

    assert grow_vocab(model, new) is model
    cfg = model.config
    assert cfg.vocab_size == new and config_before.vocab_size == old  # a new config; the old object untouched
    assert model.tok_emb.weight.shape == model.lm_head.weight.shape == (cfg.padded_vocab_size, cfg.n_embd)
    assert model.tok_emb.weight.dtype == dtype and model.tok_emb.weight.requires_grad
    assert (model.lm_head.weight is model.tok_emb.weight) == tied
    for before, after in ((emb, model.tok_emb.weight), (head, model.lm_head.weight)):
        assert torch.equal(after[:old], before[:old])  # bit-identical
        mean = before[:old].float().mean(0).to(dtype)
        assert torch.equal(after[old:new], mean.expand(new - old, -1))

    with torch.no_grad():
        logits, loss = model(idx, targets)
    assert logits.shape == (2, 12, new) and torch.isfinite(logits).all()
    assert torch.equal(logits[..., :old], logits_before)  # every old logit exactly as it was
    # the padding columns hold no probability: the loss is the cross-entropy over the real vocabulary
    torch.testing.assert_close(loss, F.cross_entropy(logits.reshape(-1, new).float(), targets.reshape(-1)))
    # mean rows: each new logit is the mean of the old ones, so k new ids raise the loss by at most log(1 + k/n)
    assert 0 <= (loss - loss_before).item() <= math.log(1 + (new - old) / old) + 1e-4
    model(torch.tensor([[new - 1]]))  # the new ids are now in range


def test_same_size_is_a_no_op_and_shrinking_is_refused(tiny) -> None:
    model = _model(tiny, 65, tied=True)
    weight = model.tok_emb.weight
    assert grow_vocab(model, 65) is model and model.tok_emb.weight is weight
    with pytest.raises(ConfigError, match="cannot shrink"):
        grow_vocab(model, 64)


def test_chat_markers_through_tokenizer_and_model(tiny, tmp_path) -> None:
    """A char model gains chat markers, learns from a chat text, and a saved copy decodes the markers back."""
    tok = CharTokenizer.from_text("user\nassistant\nWho's there? Nay, answer me", unknown="replace")
    model = _model(tiny, tok.vocab_size, tied=False).train()
    with pytest.raises(InputError):  # before growing, the marker ids are outside the model
        model(torch.tensor([[tok.vocab_size]]))
    ids = tok.add_special_tokens(CHAT)
    grow_vocab(model, tok.vocab_size)
    chat = tok.encode("<|im_start|>user\nWho's there?<|im_end|><|im_start|>assistant\nNay<|im_end|>",
                      allowed_special="all")
    x, y = torch.tensor([chat[:-1]]), torch.tensor([chat[1:]])
    _, loss = model(x, y)
    loss.backward()
    assert model.tok_emb.weight.grad[ids["<|im_start|>"]].abs().sum() > 0  # the new rows train
    assert model.lm_head.weight.grad[ids["<|im_end|>"]].abs().sum() > 0

    path = tmp_path / "chat.pt"
    torch.save({"model": model.config.to_dict(), "state_dict": model.state_dict(), "tokenizer": tok.to_dict()}, path)
    saved = torch.load(path, weights_only=True)
    again = GPT(ModelConfig.from_dict(saved["model"])).eval()
    again.load_state_dict(saved["state_dict"])
    tok2 = tokenizer_from_dict(saved["tokenizer"])
    assert tok2.special_tokens == tok.special_tokens and again.config.vocab_size == tok2.vocab_size
    with torch.no_grad():
        torch.testing.assert_close(again(x)[0], model.eval()(x)[0], rtol=0, atol=0)
    assert tok2.decode(chat) == "<|im_start|>user\nWho's there?<|im_end|><|im_start|>assistant\nNay<|im_end|>"
