"""The planner: which items share a model call, and whether running only suffixes pays.

Item ``n`` needs positions ``[first[n], end[n])`` of a row (before ``first`` it equals the clean
row, or there is nothing before it; from ``end`` on nothing is read). Items are grouped into calls:
a group runs from the smallest ``first`` of its items to the largest ``end``, so an item may pay for
positions it does not need in exchange for fewer, fuller calls. :func:`plan_groups` is the one
dynamic program over the items sorted by (``end``, ``first``): contiguous runs of that order, at
the least total ``cost(count, start, end)``, each holding at most ``cap(length)`` items.

:func:`plan_batches` first groups the rows of a call into batches (greedily, longest first, rows of
similar length together); within a batch, both planners use :func:`plan_groups`, with the cost model
of :mod:`genattrib.engine.cost_model`:

* shared forward rows (:mod:`genattrib.engine.shared_forward`): every ``first`` is 0, ``end`` is
  the row length a target needs, and a group is one forward row per point read by all its targets;
* suffixes over a clean prefix cache (:mod:`genattrib.engine.prefix_cache`, SIG's forward mode):
  ``first`` is the first changed position of a perturbed copy.

:func:`plan_suffixes` plans such suffixes and says whether they beat the full rows
(:func:`reuse_pays`); :func:`run_suffixes` runs the planned groups, chunked.

Example:
    >>> groups, cost = plan_groups([0, 1, 6, 7], [8, 8, 8, 8], lambda count, s, e: count * (e - s) + 2, lambda n: 4)
    >>> [(g.items, g.start, g.end) for g in groups], cost
    ([((0, 1), 0, 8), ((2, 3), 6, 8)], 24.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from genattrib.engine.cost_model import cost_model
from genattrib.engine.forward import ModelForward
from genattrib.engine.row_refs import RowRef, SequenceJob, rows_of

#: A row joins a batch only if it is at least this fraction of the batch's longest row.
MIN_FILL = 0.8
#: Run suffixes over the clean prefix cache when they cost at most this fraction of the full rows
#: (the margin covers what the cost model leaves out: the cache's copies and the smaller calls).
WORTH_IT = 0.85


@dataclass(frozen=True)
class Group:
    """Items run together over positions ``[start, end)`` (a suffix: the prefix ``[0, start)`` comes
    from a cache)."""

    items: tuple[int, ...]
    start: int
    end: int


def plan_groups(
    first: Sequence[int],
    end: Sequence[int],
    cost: Callable[[int, int, int], float],
    cap: Callable[[int], int] | None = None,
) -> tuple[list[Group], float]:
    """Groups covering every item once, and their total cost.

    ``cost(count, start, end)`` is what one group of ``count`` items over positions ``[start, end)``
    costs, and ``cap(length)`` (None: no limit) the most items a group of that length may hold. Groups are
    contiguous runs of the items sorted by (``end``, ``first``, index), shortest first.
    """
    n = len(first)
    order = sorted(range(n), key=lambda i: (end[i], first[i]))
    caps: dict[int, int] = {}
    best: list[float] = [0] + [math.inf] * n
    back = [0] * (n + 1)
    for i in range(1, n + 1):
        lo, hi = first[order[i - 1]], end[order[i - 1]]
        for j in range(i, 0, -1):  # group = order[j-1 : i]
            lo, hi = min(lo, first[order[j - 1]]), max(hi, end[order[j - 1]])
            length, count = hi - lo, i - j + 1
            if cap is not None and count > 1:
                if length not in caps:
                    caps[length] = max(1, cap(length))
                if count > caps[length]:
                    break
            total = best[j - 1] + cost(count, lo, hi)
            if total < best[i]:
                best[i], back[i] = total, j - 1
    groups, i = [], n
    while i > 0:
        j = back[i]
        items = tuple(order[j:i])
        groups.append(Group(items, min(first[k] for k in items), max(end[k] for k in items)))
        i = j
    return groups[::-1], float(best[n])


def reuse_pays(reuse_cost: float, full_cost: float) -> bool:
    """Whether suffixes over a clean prefix cache (``reuse_cost``, recording the prefix included)
    are worth taking over the full rows (``full_cost``), by :data:`WORTH_IT`."""
    return reuse_cost <= WORTH_IT * full_cost


@dataclass(frozen=True)
class SuffixPlan:
    """The groups to run: suffixes over the clean prefix cache (``reuse``), else full rows from 0."""

    groups: list[Group]
    reuse: bool


def plan_suffixes(
    forward: ModelForward,
    first: Sequence[int],
    end: Sequence[int],
    full_end: Sequence[int],
    rows_cap: Callable[[int], int],
    *,
    per_item: int = 1,
    passes: float = 1.0,
    prefix: tuple[int, int] = (1, 0),
    reusable: bool = True,
) -> SuffixPlan:
    """Plan items that equal a clean row before ``first`` and need positions up to ``end``.

    Each item is ``per_item`` rows (its steps), each row costs ``passes`` forward passes, and a
    call holds at most ``rows_cap(length)`` rows. The suffix groups cost their positions from
    each group's start plus recording the clean ``prefix`` (rows, length); the alternative is full
    rows ``[0, full_end)``. Suffixes are chosen when ``reusable`` and :func:`reuse_pays`.
    """
    costs = cost_model(forward)

    def cost(count: int, start: int, stop: int) -> float:
        return passes * count * per_item * costs.span(start, stop) + costs.call_overhead

    def cap(length: int) -> int:
        return rows_cap(length) // per_item

    full, full_cost = plan_groups([0] * len(full_end), full_end, cost, cap)
    if not reusable:
        return SuffixPlan(full, False)
    groups, suffix_cost = plan_groups(first, end, cost, cap)
    record = prefix[0] * costs.row(prefix[1]) + costs.call_overhead
    if reuse_pays(suffix_cost + record, full_cost):
        return SuffixPlan(groups, True)
    return SuffixPlan(full, False)


def run_suffixes(
    forward: ModelForward,
    plan: SuffixPlan,
    prepare: Callable[[Group], tuple[Callable[[slice], None], int]],
    *,
    per_item: int = 1,
    grad: bool,
) -> None:
    """Run every group of ``plan``: ``prepare(group)`` gives the chunk function and the logits a
    row reads; each group's ``len(items) * per_item`` rows of ``end - start`` positions go through
    :meth:`ModelForward.run_chunked` (an out-of-memory chunk is halved and retried)."""
    for group in plan.groups:
        run, n_logits = prepare(group)
        forward.run_chunked(len(group.items) * per_item, group.end - group.start, run, grad=grad, n_logits=n_logits)


def plan_batches(
    jobs: list[SequenceJob],
    rows_per_target: Callable[[int], int],
    rows_budget: Callable[[int], int],
    by_sequence: bool,
    max_targets: int | Callable[[int], int] = 64,
) -> list[list[RowRef]]:
    """Group targets into batches.

    ``rows_per_target(length)`` is the method's cost of one target and ``rows_budget(length)``
    how many model rows of that length fit at once. Targets are sorted longest first so a batch
    holds rows of similar length (little padding). ``by_sequence`` keeps each batch within one
    sequence (for methods that share one forward pass among a sequence's targets). ``max_targets``
    (a number, or a function of the longest row's length) caps the targets of a batch. A batch never
    holds a row shorter than :data:`MIN_FILL` of its longest: rows are padded to the longest, and
    padding costs as much as tokens (it matters once forward-only batches grow large).
    """
    refs = rows_of(jobs)
    cap = max_targets if callable(max_targets) else (lambda length: max_targets)
    if by_sequence:
        batches: list[list[RowRef]] = []
        for j in range(len(jobs)):
            mine = [r for r in refs if r.job == j]
            size = max(1, cap(max((r.length for r in mine), default=1)))
            for start in range(0, len(mine), size):
                batches.append(mine[start : start + size])
        return batches
    refs.sort(key=lambda r: (-r.length, r.job, r.row))
    batches, current = [], []
    for ref in refs:
        if current:
            length = current[0].length
            fits = (len(current) + 1) * rows_per_target(length) <= max(rows_budget(length), rows_per_target(length))
            padded = ref.length < MIN_FILL * length  # its row would be over 20% padding
            if not fits or padded or len(current) >= cap(length):
                batches.append(current)
                current = []
        current.append(ref)
    if current:
        batches.append(current)
    return batches
