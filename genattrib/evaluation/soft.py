"""Soft-NS and Soft-NC (Zhao & Aletras, ACL 2023), with their random baseline.

Scores become keep-probabilities ρ ∈ [0, 1]; element ``(i, d)`` of the prefix embeddings is kept
iff ``u < ρ_i``. With D the √2·Hellinger² distance to the unperturbed prediction q:
SoftSuff = 1 − D(ρ = s), SoftComp = D(ρ = 1 − s), Suff₀ = 1 − D(all zeroed);
Soft-NS = max(0, SoftSuff − Suff₀) / (1 − Suff₀), Soft-NC = SoftComp / (1 − Suff₀).
Special tokens are never masked (not even in the all-zeroed input).

Example:
    >>> normalize_importance(torch.tensor([2.0, -1.0, 1.0]), torch.ones(3, dtype=torch.bool), "sum").tolist()
    [0.5, 0.25, 0.25]
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from genattrib.errors import InvalidArgumentError
from genattrib.evaluation.context import EvalContext
from genattrib.evaluation.perturb import soft_mask

NORMALIZATIONS = ("sum", "minmax", "clip")


def normalize_importance(
    scores: Float[Tensor, " position"], movable: Bool[Tensor, " position"], how: str
) -> Float[Tensor, " position"]:
    """Keep-probabilities from scores, over movable positions (others get 0).

    ``sum``: |s| / Σ|s| (a distribution, like ReAGent's scores and the random baseline; default);
    ``minmax``: min–max of |s|; ``clip``: s clamped to [0, 1] (for scores already in range).
    """
    if how not in NORMALIZATIONS:
        raise InvalidArgumentError("soft_normalization", f"unknown normalisation {how!r}", f"use one of: {', '.join(NORMALIZATIONS)}")
    out = torch.zeros_like(scores)
    values = scores[movable]
    if values.numel() == 0:
        return out
    if how == "clip":
        out[movable] = values.clamp(0.0, 1.0)
        return out
    mag = values.abs()
    if how == "sum":
        total = mag.sum()
        out[movable] = mag / total if total > 0 else torch.full_like(mag, 1.0 / mag.numel())
        return out
    low, high = mag.min(), mag.max()
    out[movable] = (mag - low) / (high - low) if high > low else torch.ones_like(mag)
    return out


def random_importance(movable: Bool[Tensor, " position"], generator: torch.Generator) -> Float[Tensor, " position"]:
    """The random baseline: softmax of U(0, 1) over the movable positions."""
    out = torch.zeros(movable.shape)
    n = int(movable.sum())
    if n:
        out[movable] = torch.softmax(torch.rand(n, generator=generator), -1)
    return out


def soft_values(ctx: EvalContext, normalization: str) -> dict[str, Float[Tensor, " step"]]:
    """Soft-NS, Soft-NC and the same for the random baseline, per step (cached on ``ctx``)."""
    key = f"soft:{normalization}"
    if key in ctx.cache:
        return ctx.cache[key]  # type: ignore[return-value]
    steps = ctx.steps
    rows, index = [], []
    for i in range(steps.num_steps):
        movable, special = steps.movable(i), steps.special[i]
        embeds = ctx.forward.embed(steps.prefixes[i].unsqueeze(0))[0].float().cpu()
        keep = normalize_importance(steps.scores[i], movable, normalization)
        rand = random_importance(movable, ctx.generator(i, "random-scores"))
        variants = (
            (keep, "suff"), (1.0 - keep, "comp"), (torch.zeros_like(keep), "zero"),
            (rand, "random-suff"), (1.0 - rand, "random-comp"),
        )
        for rho, stream in variants:
            rows.append(soft_mask(embeds, rho * movable, special, ctx.generator(i, stream)))
            index.append(i)
    d = ctx.distances(rows, torch.tensor(index, dtype=torch.long)).reshape(steps.num_steps, 5)
    suff, comp, suff0 = 1.0 - d[:, 0], d[:, 1], 1.0 - d[:, 2]
    rand_suff, rand_comp = 1.0 - d[:, 3], d[:, 4]
    denom = (1.0 - suff0).clamp_min(1e-12)
    values = {
        "soft_ns": (suff - suff0).clamp_min(0.0) / denom,
        "soft_nc": comp / denom,
        "random_soft_ns": (rand_suff - suff0).clamp_min(0.0) / denom,
        "random_soft_nc": rand_comp / denom,
    }
    ctx.cache[key] = values
    return values
