"""Perturbed copies of a prefix, chosen by attribution rank (the inputs metrics score).

``top`` is how many of the highest-scored movable (non-special) positions are affected;
special tokens are always kept.

Example:
    >>> ids = torch.tensor([5, 6, 7]); order = torch.tensor([2, 0, 1])
    >>> delete_top(ids, order, 1).tolist(), keep_top(ids, order, 1, torch.zeros(3, dtype=torch.bool)).tolist()
    ([5, 6], [7])
    >>> replace_top(ids, order, 2, 0).tolist()
    [0, 6, 0]
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor


def top_count(percent: float | int, movable: int) -> int:
    """``K = ⌊k% × T⌋`` positions for ``T`` movable tokens.

    Example:
        >>> top_count(20, 12), top_count(100, 7), top_count(0, 7)
        (2, 7, 0)
    """
    return min(movable, int(math.floor(percent / 100.0 * movable + 1e-9)))


def delete_top(ids: Int[Tensor, " position"], order: Int[Tensor, " movable"], top: int) -> Int[Tensor, " kept"]:
    """``ids`` without its ``top`` highest-scored positions."""
    keep = torch.ones_like(ids, dtype=torch.bool)
    keep[order[:top]] = False
    return ids[keep]


def keep_top(
    ids: Int[Tensor, " position"], order: Int[Tensor, " movable"], top: int, special: Bool[Tensor, " position"]
) -> Int[Tensor, " kept"]:
    """Only the ``top`` highest-scored positions of ``ids`` (and its special tokens), in order."""
    keep = special.clone()
    keep[order[:top]] = True
    return ids[keep]


def replace_top(
    ids: Int[Tensor, " position"], order: Int[Tensor, " movable"], top: int, baseline_id: int
) -> Int[Tensor, " position"]:
    """``ids`` with its ``top`` highest-scored positions replaced by ``baseline_id``."""
    out = ids.clone()
    out[order[:top]] = baseline_id
    return out


def insert_top(
    ids: Int[Tensor, " position"], order: Int[Tensor, " movable"], top: int, baseline_id: int
) -> Int[Tensor, " position"]:
    """All movable positions set to ``baseline_id`` except the ``top`` highest-scored ones."""
    out = ids.clone()
    out[order[top:]] = baseline_id
    return out


def soft_mask(
    embeds: Float[Tensor, "position hidden"],
    keep: Float[Tensor, " position"],
    special: Bool[Tensor, " position"],
    generator: torch.Generator,
) -> Float[Tensor, "position hidden"]:
    """Keep element ``(i, d)`` iff ``u_{i,d} < keep_i`` with ``u ~ U(0, 1)``, else zero it
    (special tokens are never masked)."""
    u = torch.rand(embeds.shape, generator=generator)
    kept = (u < keep.unsqueeze(-1)) | special.unsqueeze(-1)
    return embeds * kept.to(embeds.device, embeds.dtype)
