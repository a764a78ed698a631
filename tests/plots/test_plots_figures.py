"""Each plot draws exactly the numbers it read: compared with the source (event files, the model) and with the
figure's own artists, not its pixels. Files are PNGs of the asked size."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.plots.conftest import make_run, png_size

from scratchllm.errors import DataError
from scratchllm.model import GPT, ModelConfig
from scratchllm.plots import figures
from scratchllm.plots.runs import find_runs, read_curves
from scratchllm.serving.inspect import inspect

TINY = dict(vocab_size=40, context_length=24, n_layer=2, n_head=4, n_embd=32, mlp_hidden=64, init_std=0.5)


def model(**overrides) -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig(**{**TINY, **overrides})).eval()


def test_loss_curves_of_a_sweep_come_from_the_event_files(sweep: Path, tmp_path: Path) -> None:
    runs = [read_curves(r, ["train/loss", "val/loss"]) for r in find_runs(str(sweep))]
    assert [r.name for r in runs] == ["model.norm=layernorm", "model.norm=rmsnorm"]
    assert runs[1].scalars["train/loss"] == ([10, 20, 30], [3.25, 2.5, 2.25]) and runs[1].source == "tensorboard"
    fig, data = figures.loss_figure(runs, ["train/loss", "val/loss"], 1000, 400)
    assert data["val/loss"]["model.norm=layernorm"] == ([15, 30], [3.25, 2.875])
    for ax, tag in zip(fig.axes, ["train/loss", "val/loss"]):
        assert ax.get_title() == tag and len(ax.lines) == 2
        for line, run in zip(ax.lines, runs):
            assert line.get_label() == run.name
            assert list(line.get_xdata()) == run.scalars[tag][0] and list(line.get_ydata()) == run.scalars[tag][1]
    assert png_size(figures.save(fig, tmp_path / "loss.png")) == (1000, 400)


def test_runs_without_events_fall_back_to_result_json(tmp_path: Path) -> None:
    run = make_run(tmp_path / "runs" / "r", [], [(100, 2.5), (200, 2.25)], events=False)
    curves = read_curves(run, ["train/loss", "val/loss"])
    assert curves.source == "result.json" and curves.scalars == {"val/loss": ([100, 200], [2.5, 2.25])}
    assert find_runs(str(tmp_path / "runs" / "*")) == [run.resolve()]
    with pytest.raises(DataError, match="no such folder"):
        find_runs(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no training runs"):
        find_runs(str(tmp_path / "empty"))


@pytest.mark.parametrize("variant", [dict(), dict(position="rope", n_kv_head=2, attention="explicit")])
def test_attention_maps_are_the_models_weights(variant: dict, tmp_path: Path) -> None:
    gpt = model(**variant)
    ids = [3, 7, 1, 9, 9, 2, 5]
    attention = inspect(gpt, ids).attention
    fig, data = figures.attention_figure(attention, [f"t{i}" for i in ids])
    assert len(fig.axes) == 2 * 4  # layers × heads panels (GQA: one per query head)
    for ax, ((layer, head), weights) in zip(fig.axes, data["maps"].items()):
        assert ax.get_title() == f"layer {layer} head {head}"
        drawn = np.asarray(ax.images[0].get_array())
        np.testing.assert_array_equal(drawn, attention[layer, head].numpy())
        np.testing.assert_allclose(drawn.sum(axis=1), 1, atol=1e-5)  # each query's weights sum to 1
        assert np.triu(drawn, k=1).max() == 0  # causal
        assert [t.get_text() for t in ax.get_xticklabels()] == [f"t{i}" for i in ids]
    assert png_size(figures.save(fig, tmp_path / "att.png")) == (60 + 220 * 4, 60 + 220 * 2)
    _, one_layer = figures.attention_figure(attention, ["x"] * len(ids), layers=[1])
    assert sorted({layer for layer, _ in one_layer["maps"]}) == [1]


def test_learned_positions_picture_is_the_embeddings_similarity(tmp_path: Path) -> None:
    gpt = model()
    fig, data = figures.positions_figure(gpt, 1200, 500)
    emb = gpt.pos_emb.weight.detach()
    expected = torch.nn.functional.cosine_similarity(emb[:, None], emb[None, :], dim=-1).numpy()
    np.testing.assert_allclose(data["similarity"], expected, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(fig.axes[0].images[0].get_array()), data["similarity"])
    np.testing.assert_array_equal(fig.axes[1].lines[0].get_ydata(), emb[:, 0].numpy())
    assert png_size(figures.save(fig, tmp_path / "pos.png")) == (1200, 500)


def test_rope_picture_matches_the_formula() -> None:
    gpt = model(position="rope", rope_theta=100.0)
    fig, data = figures.positions_figure(gpt, 1200, 500)
    hd, T = gpt.config.head_dim, gpt.config.context_length
    theta_i = 100.0 ** (-np.arange(0, hd, 2) / hd)
    angles = np.arange(T)[None, :] * theta_i[:, None]  # (pairs, positions)
    np.testing.assert_allclose(data["cosines"], np.cos(angles), atol=1e-5)
    np.testing.assert_allclose(data["score"], np.cos(angles).mean(axis=0), atol=1e-5)
    np.testing.assert_array_equal(fig.axes[1].lines[0].get_ydata(), data["score"])
    assert data["score"][0] == pytest.approx(1.0)


def test_token_probabilities_are_the_models(tmp_path: Path) -> None:
    gpt = model()
    ids = [5, 1, 30, 2, 2, 17]
    seen = inspect(gpt, ids, attention=False)
    probs = [seen.token_probability(i) for i in range(len(ids))]
    fig, data = figures.tokens_figure([str(i) for i in ids], probs, width=900, height=400)
    with torch.no_grad():
        reference = torch.softmax(gpt(torch.tensor([ids]))[0][0], dim=-1)
    expected = [math.nan] + [float(reference[i, ids[i + 1]]) for i in range(len(ids) - 1)]
    np.testing.assert_allclose(data["probs"], expected, rtol=1e-5)
    heights = [bar.get_height() for bar in fig.axes[0].patches]
    np.testing.assert_allclose(heights, np.nan_to_num(expected), rtol=1e-5)
    np.testing.assert_allclose([b.get_height() for b in fig.axes[1].patches][1:], -np.log2(expected[1:]), rtol=1e-5)
    assert png_size(figures.save(fig, tmp_path / "tok.png")) == (900, 400)


def test_positions_figure_reads_a_quantized_table():
    """A quantized file's learned position table is int8 rows: the figure looks the rows up (dequantised) and
    shows the same similarities as the float table, to int8's rounding."""
    from scratchllm.quantization import QuantConfig, quantize_model

    torch.manual_seed(0)
    model = GPT(ModelConfig(**TINY))
    _, floats = figures.positions_figure(model, 8, 4)
    quantize_model(model, QuantConfig(method="int8"))
    assert type(model.pos_emb).__name__ == "QuantizedEmbedding"
    _, quantized = figures.positions_figure(model, 8, 4)
    assert quantized["kind"] == "learned"
    np.testing.assert_allclose(quantized["similarity"], floats["similarity"], atol=0.02)
    np.testing.assert_allclose(quantized["dims"], floats["dims"], atol=0.01)
