"""Group rows that rerun only a suffix of a shared clean prefix, and say whether that pays.

Item ``n`` must recompute positions ``[first[n], end[n])`` (before ``first`` it equals the clean
row; from ``end`` on nothing is read). Items are grouped into model calls: a group starts at the
smallest ``first`` of its items and runs to the largest ``end``, so each item recomputes a few
clean positions (waste) in exchange for full batches. A dynamic program over the items sorted by
(``end``, ``first``) picks the grouping of least cost = token-rows + :data:`CALL_OVERHEAD` per
call, each group holding at most what fits in memory.

Example:
    >>> groups, cost = plan_groups([0, 1, 6, 7], [8, 8, 8, 8], weight=1, cap=lambda length: 4, overhead=2)
    >>> [(g.items.tolist(), g.start, g.end) for g in groups], cost
    ([([0, 1], 0, 8), ([2, 3], 6, 8)], 24)
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor

#: Cost of one extra model call, in token-rows: small batches leave a GPU idle, a CPU barely.
CALL_OVERHEAD = {"cpu": 4, "cuda": 256}
#: Reuse the clean prefix when it costs at most this fraction of the full rows.
WORTH_IT = 0.85

_MODE: contextvars.ContextVar[str] = contextvars.ContextVar("genattrib_kv_reuse", default="auto")


@contextlib.contextmanager
def kv_reuse(mode: str) -> Iterator[None]:
    """Private switch for tests and benchmarks: ``"auto"`` (the cost model decides), ``"always"``
    (reuse whenever the model supports it) or ``"never"`` (today's full rows); a context variable,
    so it is scoped to the block (and to the thread or task that entered it)."""
    if mode not in ("auto", "always", "never"):
        raise ValueError(mode)
    token = _MODE.set(mode)
    try:
        yield
    finally:
        _MODE.reset(token)


def reuse_wanted(reuse_cost: float | int, full_cost: float | int) -> bool:
    """Whether to take the prefix-reuse path, given both costs (see :func:`kv_reuse`)."""
    mode = _MODE.get()
    return mode == "always" or (mode == "auto" and reuse_cost <= WORTH_IT * full_cost)


def call_overhead(device: torch.device) -> int:
    return CALL_OVERHEAD.get(device.type, CALL_OVERHEAD["cuda"])


@dataclass(frozen=True)
class Group:
    """Items run together over positions ``[start, end)`` (the prefix ``[0, start)`` comes from the cache)."""

    items: Int[Tensor, " n"]
    start: int
    end: int


def plan_groups(
    first: Sequence[int], end: Sequence[int], weight: int, cap: Callable[[int], int], overhead: int
) -> tuple[list[Group], int]:
    """Groups covering every item and their cost in token-rows (``weight`` rows per item,
    ``cap(length)`` rows at most per group, ``overhead`` token-rows per group)."""
    n = len(first)
    order = sorted(range(n), key=lambda i: (end[i], first[i]))
    caps: dict[int, int] = {}
    best = [0] + [0] * n
    back = [0] * (n + 1)
    for i in range(1, n + 1):
        lo, hi, best[i] = first[order[i - 1]], end[order[i - 1]], -1
        for j in range(i, 0, -1):  # group = order[j-1 : i]
            lo, hi = min(lo, first[order[j - 1]]), max(hi, end[order[j - 1]])
            length = hi - lo
            if length not in caps:
                caps[length] = max(1, cap(length) // weight)
            count = i - j + 1
            if count > caps[length] and count > 1:
                break
            cost = best[j - 1] + count * weight * length + overhead
            if best[i] < 0 or cost < best[i]:
                best[i], back[i] = cost, j - 1
    groups, i = [], n
    while i > 0:
        j = back[i]
        items = order[j:i]
        groups.append(Group(torch.tensor(items), min(first[k] for k in items), max(end[k] for k in items)))
        i = j
    return groups[::-1], best[n]
