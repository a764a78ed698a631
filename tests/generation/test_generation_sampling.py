"""The sampling functions on hand-made distributions: exact kept sets, exact renormalised probabilities, draws."""

from __future__ import annotations

import math

import pytest
import torch

from scratchllm.errors import ConfigError
from scratchllm.generation.sampling import draw
from scratchllm.generation import (
    apply_repetition_penalty,
    apply_temperature,
    filter_logits,
    min_p_filter,
    sample_next,
    top_k_filter,
    top_p_filter,
)


def logits_of(probs: list[float]) -> torch.Tensor:
    return torch.tensor(probs, dtype=torch.float64).log().float()


def kept(logits: torch.Tensor) -> list[int]:
    return torch.isfinite(logits).nonzero().flatten().tolist()


def renormalised(probs: list[float], keep: list[int]) -> torch.Tensor:
    p = torch.tensor(probs, dtype=torch.float32)
    mask = torch.zeros_like(p, dtype=torch.bool)
    mask[keep] = True
    p = torch.where(mask, p, torch.zeros_like(p))
    return p / p.sum()


# ------------------------------------------------------------------------------------------ temperature
def test_temperature_divides_and_reshapes_the_distribution() -> None:
    logits = torch.tensor([1.0, 2.0, 3.0])
    assert torch.equal(apply_temperature(logits, 2.0), torch.tensor([0.5, 1.0, 1.5]))
    probs = [0.6, 0.3, 0.1]
    for t in (0.5, 1.0, 2.0):
        got = torch.softmax(apply_temperature(logits_of(probs), t), dim=-1)
        powered = torch.tensor(probs) ** (1 / t)  # softmax(log p / T) = p^(1/T) / Σ p^(1/T)
        torch.testing.assert_close(got, powered / powered.sum(), rtol=0, atol=1e-6)
    with pytest.raises(ConfigError, match="greedy"):
        apply_temperature(logits, 0)


# ---------------------------------------------------------------------------------------------- top-k
def test_top_k_keeps_exactly_k_with_lowest_id_tie_break() -> None:
    logits = torch.tensor([1.0, 3.0, 2.0, 3.0, 0.0])
    assert kept(top_k_filter(logits, 2)) == [1, 3]
    assert kept(top_k_filter(logits, 3)) == [1, 2, 3]
    assert kept(top_k_filter(logits, 1)) == [1]  # tie between ids 1 and 3: the lower id wins
    assert torch.equal(top_k_filter(logits, 5), logits)
    assert torch.equal(top_k_filter(logits, 99), logits)
    probs = [0.1, 0.4, 0.2, 0.25, 0.05]
    got = torch.softmax(top_k_filter(logits_of(probs), 3), dim=-1)
    torch.testing.assert_close(got, renormalised(probs, [1, 2, 3]), rtol=0, atol=1e-6)


def test_filters_work_per_row_and_do_not_modify_their_input() -> None:
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0], [4.0, 0.0, 1.0, 5.0]])
    before = logits.clone()
    out = top_k_filter(logits, 2)
    assert torch.equal(logits, before)
    assert torch.isfinite(out).tolist() == [[False, True, True, False], [True, False, False, True]]
    out = min_p_filter(logits, 0.5)
    assert torch.equal(logits, before)
    assert torch.isfinite(out).tolist() == [[False, True, False, False], [False, False, False, True]]


# ---------------------------------------------------------------------------------------------- top-p
@pytest.mark.parametrize(
    "top_p, expected",
    [
        (0.4, [0]),  # the first token already crosses p: kept alone
        (0.5, [0]),  # exactly reaches p
        (0.6, [0, 1]),  # token 1 crosses p: kept
        (0.8, [0, 1]),  # 0.5 + 0.3 reaches 0.8 exactly (float sums are within the tolerance)
        (0.81, [0, 1, 2]),
        (1.0, [0, 1, 2, 3]),
    ],
)
def test_top_p_keeps_the_smallest_set_reaching_p(top_p: float, expected: list[int]) -> None:
    probs = [0.5, 0.3, 0.15, 0.05]
    # Shuffle the vocabulary order so the filter must sort, and check the renormalised probabilities exactly.
    perm = [2, 0, 3, 1]
    shuffled = [probs[i] for i in perm]
    out = top_p_filter(logits_of(shuffled), top_p)
    assert sorted(perm[i] for i in kept(out)) == expected
    want = renormalised(shuffled, [perm.index(i) for i in expected])
    torch.testing.assert_close(torch.softmax(out, dim=-1), want, rtol=0, atol=1e-6)


def test_top_p_ties_and_tiny_p_are_deterministic() -> None:
    logits = logits_of([0.2, 0.3, 0.3, 0.2])
    assert kept(top_p_filter(logits, 0.3)) == [1]  # equal probabilities: the lower id is ranked first
    assert kept(top_p_filter(logits, 0.5)) == [1, 2]
    assert kept(top_p_filter(logits, 0.7)) == [0, 1, 2]
    assert kept(top_p_filter(logits, 1e-9)) == [1]  # never an empty set


def test_top_p_counts_float_rounding_as_reaching_p() -> None:
    # After a float32 softmax the top probability 0.6 comes out as 0.59999990, and 0.6 + 0.35 as 0.94999993:
    # both must still count as having reached p, or top-p would keep one token too many.
    assert kept(top_p_filter(logits_of([0.05, 0.35, 0.6]), 0.6)) == [2]
    assert kept(top_p_filter(logits_of([0.05, 0.35, 0.6]), 0.95)) == [1, 2]


# ---------------------------------------------------------------------------------------------- min-p
def test_min_p_keeps_tokens_above_a_fraction_of_the_top_probability() -> None:
    probs = [0.5, 0.25, 0.1, 0.15]
    out = min_p_filter(logits_of(probs), 0.25)  # threshold 0.125
    assert kept(out) == [0, 1, 3]
    torch.testing.assert_close(torch.softmax(out, dim=-1), renormalised(probs, [0, 1, 3]), rtol=0, atol=1e-6)
    assert kept(min_p_filter(logits_of(probs), 0.45)) == [0, 1]
    assert kept(min_p_filter(logits_of(probs), 0.0)) == [0, 1, 2, 3]
    assert kept(min_p_filter(torch.tensor([2.0, 2.0, 1.0]), 1.0)) == [0, 1]  # ties with the top survive


def test_filter_logits_applies_temperature_before_the_filters() -> None:
    probs = [0.6, 0.3, 0.1]
    # At T=1 top_p=0.6 keeps only token 0; at T=3 the distribution is flatter and token 1 is needed as well.
    assert kept(filter_logits(logits_of(probs), temperature=1.0, top_p=0.6)) == [0]
    assert kept(filter_logits(logits_of(probs), temperature=3.0, top_p=0.6)) == [0, 1]
    out = filter_logits(logits_of(probs), temperature=1.0, top_k=2, min_p=0.6)
    assert kept(out) == [0]


# ------------------------------------------------------------------------------------------------ draws
def test_greedy_is_argmax_with_lowest_id_on_ties() -> None:
    logits = torch.tensor([[0.0, 5.0, 5.0, 1.0], [9.0, 0.0, 0.0, 0.0]])
    assert sample_next(logits, temperature=0).tolist() == [1, 0]
    assert sample_next(logits[0], temperature=0).item() == 1


def test_draws_are_reproducible_with_a_seeded_generator() -> None:
    logits = torch.zeros(200, 10)
    draw = lambda seed: sample_next(logits, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(draw(7), draw(7))
    assert not torch.equal(draw(7), draw(8))
    assert draw(7).shape == (200,) and draw(7).dtype == torch.long


def test_top_p_draw_frequencies_match_the_filtered_distribution() -> None:
    """20k draws after top-p: removed tokens never appear, the rest pass a chi-square test (p > 0.01)."""
    probs = [0.05, 0.35, 0.12, 0.25, 0.08, 0.15]
    top_p = 0.8  # sorted: 0.35, 0.25, 0.15 (cum 0.75), 0.12 crosses 0.8 → ids {1, 2, 3, 5}
    n = 20_000
    logits = logits_of(probs).expand(n, -1)
    draws = sample_next(logits, top_p=top_p, generator=torch.Generator().manual_seed(1234))
    counts = torch.bincount(draws, minlength=6).double()
    assert counts[0] == 0 and counts[4] == 0
    keep = [1, 2, 3, 5]
    expected = renormalised(probs, keep).double()[keep] * n
    observed = counts[keep]
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    dof = len(keep) - 1
    p_value = float(torch.special.gammaincc(torch.tensor(dof / 2), torch.tensor(chi2 / 2)))  # χ² survival
    assert p_value > 0.01, (chi2, p_value, observed.tolist(), expected.tolist())
    # The statistic really discriminates: the unfiltered distribution is rejected.
    wrong = torch.tensor(probs, dtype=torch.float64)[keep] * n
    assert float(((observed - wrong) ** 2 / wrong).sum()) > 100


def test_chi_square_survival_function_matches_known_critical_values() -> None:
    for dof, critical in ((1, 6.635), (3, 11.345), (5, 15.086)):  # χ² values with upper tail 0.01
        p = float(torch.special.gammaincc(torch.tensor(dof / 2), torch.tensor(critical / 2)))
        assert math.isclose(p, 0.01, rel_tol=1e-3)


# ---------------------------------------------------------------------------------- repetition penalty
def test_repetition_penalty_divides_positive_and_multiplies_negative_logits() -> None:
    logits = torch.tensor([2.0, -1.0, 0.5, 3.0])
    out = apply_repetition_penalty(logits, [0, 1, 1], 2.0)  # repeats count once
    assert torch.equal(out, torch.tensor([1.0, -2.0, 0.5, 3.0]))
    assert torch.equal(logits, torch.tensor([2.0, -1.0, 0.5, 3.0]))  # input untouched
    batch = torch.tensor([[2.0, -1.0, 0.5], [2.0, -1.0, 0.5]])
    out = apply_repetition_penalty(batch, [[0], [1, 2]], 4.0)  # per row
    assert torch.equal(out, torch.tensor([[0.5, -1.0, 0.5], [2.0, -4.0, 0.125]]))
    out = apply_repetition_penalty(batch, torch.tensor([[2], [2]]), 0.5)  # < 1 encourages repeats
    assert torch.equal(out[:, 2], torch.tensor([1.0, 1.0]))
    assert torch.equal(apply_repetition_penalty(batch, [[0], [1]], 1.0), batch)
    assert torch.equal(apply_repetition_penalty(batch, [[], []], 3.0), batch)


# ------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=1.5), "top_p"),
        (dict(top_p=-0.1), "top_p"),
        (dict(temperature=-1.0), "temperature"),
        (dict(top_k=0), "top_k"),
        (dict(top_k=2.5), "top_k"),
        (dict(min_p=1.5), "min_p"),
        (dict(min_p=-0.1), "min_p"),
    ],
)
def test_bad_sampling_arguments_raise_config_error(kwargs: dict, name: str) -> None:
    with pytest.raises(ConfigError, match=name) as info:
        sample_next(torch.zeros(4), **kwargs)
    assert "\n" not in str(info.value)


def test_bad_filter_arguments_raise_config_error() -> None:
    logits = torch.zeros(4)
    with pytest.raises(ConfigError, match="top_p"):
        top_p_filter(logits, 0)
    with pytest.raises(ConfigError, match="top_k"):
        top_k_filter(logits, 0)
    with pytest.raises(ConfigError, match="min_p"):
        min_p_filter(logits, 2)
    with pytest.raises(ConfigError, match="repetition_penalty"):
        apply_repetition_penalty(logits, [0], 0.0)


# ------------------------------------------------------------------------------------ fast paths vs references
def sort_based_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """The definition spelled out: stable sort by value (ties by id), keep the first k."""
    order = torch.sort(-logits, dim=-1, stable=True).indices[..., :k]
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, order, True)
    return logits.masked_fill(~keep, float("-inf"))


@pytest.mark.parametrize("k", [1, 2, 7, 40, 199])
def test_top_k_without_a_sort_equals_the_sorted_definition(k: int) -> None:
    torch.manual_seed(k)
    logits = torch.randint(-3, 4, (6, 200)).float()  # many ties at every boundary
    assert torch.equal(top_k_filter(logits, k), sort_based_top_k(logits, k))
    wide = torch.randn(2, 50257)
    assert torch.equal(top_k_filter(wide, k), sort_based_top_k(wide, k))


def test_the_draw_follows_the_distribution_and_never_picks_zero_mass() -> None:
    probs = torch.tensor([0.0, 0.5, 0.2, 0.0, 0.3, 0.0])
    n = 20_000
    draws = draw(probs.expand(n, -1), generator=torch.Generator().manual_seed(99))
    counts = torch.bincount(draws, minlength=6).double()
    assert counts[0] == counts[3] == counts[5] == 0
    keep = [1, 2, 4]
    expected = probs.double()[keep] * n
    chi2 = float(((counts[keep] - expected) ** 2 / expected).sum())
    assert float(torch.special.gammaincc(torch.tensor(1.0), torch.tensor(chi2 / 2))) > 0.01, chi2
    one_hot = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    assert draw(one_hot).tolist() == [2]
    assert draw(probs).shape == () and draw(probs.expand(1, 2, 6)).shape == (1, 2)
