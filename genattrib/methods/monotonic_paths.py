"""Monotonic paths for discretized integrated gradients (DIG, UDIG), vectorised over words.

A dimension ``d`` of a point ``c`` is *monotone* between a baseline ``b`` and an end point ``x``
iff ``c_d`` lies between ``b_d`` and ``x_d``. Anchors are made monotone by replacing their
non-monotone dimensions with ``P_d - (P_d - b_d) / m`` (``P`` the previous path point), so
every coordinate moves monotonically from the baseline to the input.

Example:
    >>> b, x = torch.zeros(1, 2), torch.ones(1, 2)
    >>> anchors = torch.tensor([[[0.5, 2.0]]])              # dim 1 overshoots
    >>> monotonic_path(x, anchors, b, factor=0)[0].tolist()
    [[0.0, 0.0], [0.5, 0.0], [1.0, 1.0]]
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

STRATEGIES = ("greedy", "maxcount")


def is_between(
    point: Float[Tensor, "*#batch hidden"], base: Float[Tensor, "*#batch hidden"], end: Float[Tensor, "*#batch hidden"]
) -> Bool[Tensor, "... hidden"]:
    """Per dimension: ``point`` lies between ``base`` and ``end`` (equal to both where they are equal)."""
    return (point >= torch.minimum(base, end)) & (point <= torch.maximum(base, end))


def monotonize(
    point: Float[Tensor, "*#batch hidden"],
    previous: Float[Tensor, "*#batch hidden"],
    base: Float[Tensor, "*#batch hidden"],
    m: int,
) -> Float[Tensor, "... hidden"]:
    """``point`` with its non-monotone dimensions (w.r.t. ``base`` and ``previous``) replaced by
    ``previous - (previous - base) / m``."""
    lo, hi = torch.minimum(base, previous), torch.maximum(base, previous)
    step = (previous - (previous - base) / m).clamp(lo, hi)  # the clamp only undoes rounding
    return torch.where((point >= lo) & (point <= hi), point, step)


def anchor_scores(
    candidates: Float[Tensor, "word cand hidden"],
    previous: Float[Tensor, "word hidden"],
    base: Float[Tensor, "word hidden"],
    m: int,
    strategy: str,
) -> Float[Tensor, "word cand"]:
    """Lower is better. ``greedy``: distance from a candidate to its monotonised version;
    ``maxcount``: minus the number of monotone dimensions."""
    prev, b = previous.unsqueeze(1), base.unsqueeze(1)
    if strategy == "maxcount":
        return -is_between(candidates, b, prev).sum(-1).float()
    if strategy == "greedy":
        return (candidates - monotonize(candidates, prev, b, m)).norm(dim=-1)
    raise ValueError(strategy)


def choose_anchor(
    cand: Int[Tensor, "word cand"],
    vocab: Float[Tensor, "vocab hidden"],
    previous: Float[Tensor, "word hidden"],
    base: Float[Tensor, "word hidden"],
    chosen: Int[Tensor, "word slot"],
    m: int,
    strategy: str,
    allowed: Bool[Tensor, " word"] | None = None,
) -> tuple[Bool[Tensor, " word"], Int[Tensor, " word"], Float[Tensor, "word hidden"]]:
    """DIG's choice among candidate words (shared by DIG and UDIG): drop baseline words and words
    already on the path, score with :func:`anchor_scores`, take the first minimum.

    Returns ``(found, ids, vectors)``; where ``found`` is False no candidate was left (ids and
    vectors are then meaningless and the caller picks its fallback).
    """
    vecs = vocab[cand]
    ok = ~(vecs == base.unsqueeze(1)).all(-1) & ~(cand.unsqueeze(-1) == chosen.unsqueeze(1)).any(-1)
    if allowed is not None:
        ok = ok & allowed.unsqueeze(1)
    pick = anchor_scores(vecs, previous, base, m, strategy).masked_fill(~ok, float("inf")).argmin(-1)
    rows = torch.arange(cand.shape[0], device=cand.device)
    return ok.any(-1), cand[rows, pick], vecs[rows, pick]


def upscale(path: Float[Tensor, "word point hidden"]) -> Float[Tensor, "word _point2 hidden"]:
    """Insert the midpoint between every two consecutive points (n -> 2n - 1 points)."""
    mid = 0.5 * (path[:, :-1] + path[:, 1:])
    out = torch.empty(path.shape[0], 2 * path.shape[1] - 1, path.shape[2], dtype=path.dtype, device=path.device)
    out[:, 0::2] = path
    out[:, 1::2] = mid
    return out


def monotonic_path(
    inputs: Float[Tensor, "word hidden"],
    anchors: Float[Tensor, "word anchor hidden"],
    base: Float[Tensor, "word hidden"],
    factor: int = 0,
) -> Float[Tensor, "word point hidden"]:
    """DIG's steps 2-3: monotonise the anchors (ordered from the input towards the baseline),
    append the baseline, reverse (baseline -> input) and upscale ``factor`` times:
    ``2**factor * (m + 1) + 1`` points with ``m`` anchors."""
    m = max(1, int(anchors.shape[1]))
    points = [inputs]
    for j in range(anchors.shape[1]):
        points.append(monotonize(anchors[:, j], points[-1], base, m))
    points.append(base)
    path = torch.stack(points[::-1], dim=1)
    for _ in range(factor):
        path = upscale(path)
    return path
