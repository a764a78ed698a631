"""Turning next-token logits into a token: temperature, truncation filters, repetition penalty, the draw itself.

Every function here is pure: it takes logits whose last dimension is the vocabulary (any leading batch shape)
and returns new logits (or token ids); nothing is modified in place.

- **Temperature** divides the logits before the softmax. Below 1 it sharpens the distribution towards the most
  likely tokens, above 1 it flattens it; 0 is the limit "always the most likely token" (greedy decoding), which
  ``sample_next`` implements as an argmax rather than a division by zero.
- **Top-k** keeps the k most likely tokens. Simple, but k is blind to the shape of the distribution: k=40 is too
  many when the model is sure (one token holds 99% of the mass) and too few when it is not.
- **Top-p** (nucleus sampling, Holtzman et al. 2019) adapts to that shape: sort tokens by probability and keep
  the smallest head whose total mass reaches p. A confident model keeps one or two tokens, an unsure one keeps
  many. The token whose probability *crosses* p is kept, so the kept mass is always ≥ p.
- **Min-p** (Nguyen et al. 2024) keeps every token whose probability is at least ``min_p`` times the top
  token's probability. The cut-off scales with the model's confidence: with a 90% favourite, min_p=0.1 drops
  everything under 9%; with a 10% favourite only what is under 1%. It holds up better than top-p at high
  temperature, where the tail gets fat and a nucleus of fixed mass fills with junk.
- **Repetition penalty** (CTRL, Keskar et al. 2019) makes tokens already in the sequence less likely: a positive
  logit is divided by the penalty, a negative one multiplied by it, so both move towards "less likely".

Removed tokens get a logit of −∞, i.e. exactly zero probability after the softmax; the survivors are
renormalised by that same softmax. Every filter keeps at least one token, and ties are broken towards the lower
token id, so the kept set never depends on sort instability.

``SamplingConfig`` gathers these settings (and the decode loop's ``seed``, ``use_cache``, ``on_overflow``) into
one validated, serialisable object: the single place their defaults live, shared by ``generate``/``stream``, the
CLI (``conf/generate.yaml`` spells the same keys flat) and anything else that generates.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from scratchllm.errors import ConfigError

# Top-p compares cumulative float32 probabilities with p, and rounding lands them a few ulps off: a softmax over
# log(0.05, 0.35, 0.6) gives the top token 0.5999999. Mass within this tolerance of p counts as having reached it,
# so that split with top_p=0.6 keeps one token, not two.
_TOP_P_TOLERANCE = 1e-6


# ------------------------------------------------------------------------------------------- validation
def _check_temperature(temperature: float) -> None:
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or temperature < 0:
        raise ConfigError(f"temperature must be a number >= 0 (0 = greedy), got {temperature!r}")


def _check_top_k(top_k: int | None) -> None:
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
        raise ConfigError(f"top_k must be an integer >= 1 (or None to disable it), got {top_k!r}")


def _check_top_p(top_p: float | None) -> None:
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1):
        raise ConfigError(f"top_p must be in (0, 1] (1 keeps everything; or None to disable it), got {top_p!r}")


def _check_min_p(min_p: float | None) -> None:
    if min_p is not None and (isinstance(min_p, bool) or not isinstance(min_p, (int, float)) or not 0 <= min_p <= 1):
        raise ConfigError(f"min_p must be in [0, 1] (0 keeps everything; or None to disable it), got {min_p!r}")


def _check_penalty(penalty: float | None) -> None:
    if penalty is not None and (isinstance(penalty, bool) or not isinstance(penalty, (int, float)) or penalty <= 0):
        raise ConfigError(
            f"repetition_penalty must be > 0 (1 = off, >1 discourages repeats), got {penalty!r}"
        )


def validate_sampling(
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    repetition_penalty: float | None = None,
) -> None:
    """Raise ``ConfigError`` for any sampling setting that cannot work (checked once, before generating)."""
    _check_temperature(temperature)
    _check_top_k(top_k)
    _check_top_p(top_p)
    _check_min_p(min_p)
    _check_penalty(repetition_penalty)


OVERFLOW_CHOICES = ("slide", "stop")


@dataclass(frozen=True)
class SamplingConfig:
    """How ``generate``/``stream`` pick tokens: everything except the prompt, the length and when to stop.

    Checked when built, so a bad value fails before a model is loaded or a token is drawn; frozen, so one object
    can serve many generations. ``conf/generate.yaml`` repeats these defaults as the CLI's flat keys
    (``temperature=0.7 top_k=50``) and a test keeps the two equal.
    """

    temperature: float = 0.8  # 0 = greedy
    top_k: int | None = 200  # top_k / top_p / min_p / repetition_penalty: None turns it off
    top_p: float | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    seed: int | None = None  # seeds a private generator (the global RNG is untouched); None = a fresh draw
    use_cache: bool = True  # KV-cached decoding; False = a full forward per token (the reference path)
    on_overflow: str = "slide"  # when the sequence outgrows the context: slide | stop (generate.py says how)

    def __post_init__(self) -> None:
        validate_sampling(
            temperature=self.temperature, top_k=self.top_k, top_p=self.top_p, min_p=self.min_p,
            repetition_penalty=self.repetition_penalty,
        )
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ConfigError(f"seed must be an integer (or null for a fresh draw), got {self.seed!r}")
        if not isinstance(self.use_cache, bool):
            raise ConfigError(f"use_cache must be true or false, got {self.use_cache!r}")
        if self.on_overflow not in OVERFLOW_CHOICES:
            raise ConfigError(
                f"on_overflow={self.on_overflow!r} is not known; choose one of: {', '.join(OVERFLOW_CHOICES)}"
            )

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "SamplingConfig":
        """The settings found in ``values`` (a config node, a request); its other keys belong to someone else."""
        return cls(**{name: values[name] for name in cls.names() if name in values})

    def replace(self, **changes: Any) -> "SamplingConfig":
        """A copy with ``changes`` applied (and checked); a name that is not a setting is a ``ConfigError``."""
        unknown = [name for name in changes if name not in self.names()]
        if unknown:
            raise ConfigError(f"{unknown[0]!r} is not a sampling setting; the settings are: {', '.join(self.names())}")
        return dataclasses.replace(self, **changes) if changes else self

    def to_dict(self) -> dict[str, Any]:
        """Plain values (JSON/YAML-ready); ``from_mapping`` reads them back."""
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------------------ filters
def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """logits / temperature. Temperature 0 (greedy) has no distribution: use ``sample_next(temperature=0)``."""
    _check_temperature(temperature)
    if temperature == 0:
        raise ConfigError("temperature=0 means greedy decoding; call sample_next(..., temperature=0) instead")
    return logits / temperature


def _sorted_descending(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # A stable sort of the negated logits orders by value, highest first, and equal values by token id: the
    # deterministic tie-break every filter relies on.
    neg_sorted, order = torch.sort(-logits, dim=-1, stable=True)
    return -neg_sorted, order


def _keep_sorted(logits: torch.Tensor, order: torch.Tensor, keep_sorted: torch.Tensor) -> torch.Tensor:
    """Scatter a keep-mask given in sorted order back to vocabulary order and blank out the rest."""
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    return logits.masked_fill(~keep, float("-inf"))


def top_k_filter(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """Keep exactly the ``top_k`` highest logits (ties at the boundary go to the lower token id).

    No sort: ``torch.topk`` finds the k-th largest value, everything above it is kept, and of the tokens equal to
    it the lowest ids fill the places left (a full sort of a 50k vocabulary costs several times more per token).
    """
    _check_top_k(top_k)
    if top_k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
    above = logits > kth
    ties = logits == kth
    room = top_k - above.sum(dim=-1, keepdim=True)
    keep = above | (ties & (ties.cumsum(dim=-1) <= room))
    return logits.masked_fill(~keep, float("-inf"))


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probability mass reaches ``top_p`` (nucleus sampling).

    A token is kept when the mass of the tokens ranked above it is still below p, which keeps the token that
    crosses p; the most likely token is always kept.
    """
    _check_top_p(top_p)
    if top_p >= 1:
        return logits
    sorted_logits, order = _sorted_descending(logits)
    probs = torch.softmax(sorted_logits.float(), dim=-1)
    mass_before = torch.cumsum(probs, dim=-1) - probs
    keep_sorted = mass_before < top_p - _TOP_P_TOLERANCE
    keep_sorted[..., 0] = True
    return _keep_sorted(logits, order, keep_sorted)


def min_p_filter(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    """Keep tokens whose probability is at least ``min_p`` × the most likely token's probability."""
    _check_min_p(min_p)
    if min_p <= 0:
        return logits
    probs = torch.softmax(logits.float(), dim=-1)
    threshold = min_p * probs.amax(dim=-1, keepdim=True)
    keep = probs >= threshold
    # The top token always passes (p_max >= min_p * p_max), so at least one token survives.
    return logits.masked_fill(~keep, float("-inf"))


def apply_repetition_penalty(
    logits: torch.Tensor,
    token_ids: torch.Tensor | Sequence[int] | Sequence[Sequence[int]],
    penalty: float,
) -> torch.Tensor:
    """CTRL-style penalty on every token id that already occurs in each row's sequence.

    ``logits`` is (V,) with ``token_ids`` a 1-D sequence, or (B, V) with one sequence per row (rows may differ in
    length when given as lists). A token counts once however often it occurred. ``penalty`` 1 is a no-op.
    """
    _check_penalty(penalty)
    if penalty == 1:
        return logits
    vocab = logits.shape[-1]
    flat = logits.reshape(-1, vocab)
    if isinstance(token_ids, torch.Tensor):
        rows = token_ids.reshape(flat.shape[0], -1).tolist() if token_ids.numel() else [[] for _ in range(len(flat))]
    elif logits.dim() == 1:
        rows = [list(token_ids)]  # type: ignore[arg-type]
    else:
        rows = [list(r) for r in token_ids]  # type: ignore[union-attr]
    if len(rows) != flat.shape[0]:
        raise ConfigError(f"repetition penalty got {len(rows)} token sequences for {flat.shape[0]} rows of logits")
    present = torch.zeros(flat.shape, dtype=torch.bool, device=logits.device)
    for i, row in enumerate(rows):
        if row:
            present[i, torch.as_tensor(row, dtype=torch.long, device=logits.device)] = True
    penalised = torch.where(flat > 0, flat / penalty, flat * penalty)
    return torch.where(present, penalised, flat).reshape(logits.shape)


# ----------------------------------------------------------------------------------------------- the draw
def filter_logits(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
) -> torch.Tensor:
    """The float32 logits ``sample_next`` draws from (temperature > 0): temperature, then top-k, top-p, min-p.

    The filters see the temperature-scaled distribution, so top-p's nucleus and min-p's threshold move with
    the temperature, as in most inference engines.
    """
    out = apply_temperature(logits.float(), temperature)
    if top_k is not None:
        out = top_k_filter(out, top_k)
    if top_p is not None:
        out = top_p_filter(out, top_p)
    if min_p is not None:
        out = min_p_filter(out, min_p)
    return out


def sample_next(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw one token id per row: logits (..., V) → long tensor (...).

    ``temperature=0`` is greedy decoding (argmax, lowest id on ties; the filters cannot change the argmax).
    Pass a seeded ``generator`` (on the logits' device) for reproducible draws.
    """
    validate_sampling(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p)
    if temperature == 0:
        return logits.argmax(dim=-1)
    filtered = filter_logits(logits, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p)
    probs = torch.softmax(filtered, dim=-1)
    return draw(probs, generator=generator)


def draw(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token id per row of ``probs`` (..., V), by inverting the cumulative distribution.

    One uniform number u per row, scaled to the row's total mass, picks the first token whose cumulative mass
    exceeds it: token i is drawn with probability p_i, and a zero-probability token never is (its cumulative
    mass equals its predecessor's). The sum runs in float64 so 50k small terms add up without drift. It gives
    the same distribution as ``torch.multinomial`` at a fraction of its cost on a 50k vocabulary.
    """
    vocab = probs.shape[-1]
    wide = torch.float32 if probs.device.type == "mps" else torch.float64  # MPS has no float64
    flat = probs.reshape(-1, vocab).to(wide)
    cdf = flat.cumsum(dim=-1)
    u = torch.rand((flat.shape[0], 1), generator=generator, dtype=wide, device=flat.device)
    ids = torch.searchsorted(cdf, u * cdf[:, -1:], right=True)
    # u * total can round up to the total itself: fall back to the last token with any mass.
    last = vocab - 1 - (flat > 0).flip(-1).int().argmax(dim=-1, keepdim=True)
    return torch.minimum(ids, last).reshape(probs.shape[:-1])
