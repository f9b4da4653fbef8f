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

from genattrib.faithfulness.context import EvalContext
from genattrib.faithfulness.perturb import soft_mask
from genattrib.validation import check_choice

NORMALIZATIONS = ("sum", "minmax", "clip")


def normalize_importance(
    scores: Float[Tensor, " position"], movable: Bool[Tensor, " position"], how: str
) -> Float[Tensor, " position"]:
    """Keep-probabilities from scores, over movable positions (others get 0).

    ``sum``: |s| / Σ|s| (a distribution, like ReAGent's scores and the random baseline; default);
    ``minmax``: min–max of |s|; ``clip``: s clamped to [0, 1] (for scores already in range).
    """
    check_choice("soft_normalization", how, NORMALIZATIONS, "normalisation")
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


def soft_values(ctx: EvalContext, normalization: str, with_random: bool = True) -> dict[str, Float[Tensor, " step"]]:
    """Soft-NS, Soft-NC and (``with_random``) the same for the random baseline, per step (cached
    on ``ctx``). The all-zeroed input (Suff₀) is run once per distinct prefix."""
    key = f"soft:{normalization}:{with_random}"
    if key in ctx.cache:
        return ctx.cache[key]  # type: ignore[return-value]
    steps = ctx.steps
    reps, rep_of = ctx.distinct
    rows, index = [], []

    def add(i: int, rho: Tensor, stream: str, embeds: Tensor) -> None:
        rows.append(soft_mask(embeds, rho * steps.movable(i), steps.special[i], ctx.generator(i, stream)))
        index.append(i)

    embeds = [ctx.forward.embed(p.unsqueeze(0))[0].float().cpu() for p in steps.prefixes]
    for i in range(steps.num_steps):
        keep = normalize_importance(steps.scores[i], steps.movable(i), normalization)
        add(i, keep, "suff", embeds[i])
        add(i, 1.0 - keep, "comp", embeds[i])
        if with_random:
            rand = random_importance(steps.movable(i), ctx.generator(i, "random-scores"))
            add(i, rand, "random-suff", embeds[i])
            add(i, 1.0 - rand, "random-comp", embeds[i])
    per_step = len(rows) // max(steps.num_steps, 1)
    for i in reps:
        add(i, torch.zeros(steps.prefixes[i].shape), "zero", embeds[i])
    d = ctx.distances(rows, torch.tensor(index, dtype=torch.long))
    own = d[: per_step * steps.num_steps].reshape(steps.num_steps, per_step)
    suff0 = 1.0 - d[per_step * steps.num_steps :][rep_of]
    denom = (1.0 - suff0).clamp_min(1e-12)
    values = {"soft_ns": (1.0 - own[:, 0] - suff0).clamp_min(0.0) / denom, "soft_nc": own[:, 1] / denom}
    if with_random:
        values["random_soft_ns"] = (1.0 - own[:, 2] - suff0).clamp_min(0.0) / denom
        values["random_soft_nc"] = own[:, 3] / denom
    ctx.cache[key] = values
    return values
