"""Plan the work: which target steps are explained, and how they are grouped into batches.

Example:
    >>> jobs = [SequenceJob(torch.arange(6), prompt_length=3, step_start=0, step_stop=3)]
    >>> [t.position for t in targets_of(jobs)]
    [3, 4, 5]
    >>> units = SequenceJob(torch.arange(6), prompt_length=3, step_start=0, step_stop=3, units=[(3, 5), (5, 6)])
    >>> [(t.position, t.stop, t.length) for t in targets_of([units])]
    [(3, 5, 4), (5, 6, 5)]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Int
from torch import Tensor

#: A row joins a batch only if it is at least this fraction of the batch's longest row.
MIN_FILL = 0.8


@dataclass
class SequenceJob:
    """One sequence to explain: ids (prompt + generated) and the generated steps to explain."""

    input_ids: Int[Tensor, " position"]
    prompt_length: int
    step_start: int
    step_stop: int
    special_mask: Bool[Tensor, " position"] | None = None
    contrast_ids: Int[Tensor, " generated"] | None = None
    units: list[tuple[int, int]] | None = None  # explained units [start, stop) of positions; None: tokens
    source_groups: Int[Tensor, " position"] | None = None  # source unit of each position (-1: none)

    def __post_init__(self) -> None:
        if self.special_mask is None:
            self.special_mask = torch.zeros(self.input_ids.shape[0], dtype=torch.bool)

    @property
    def num_steps(self) -> int:
        """Generated steps selected (tokens covered by the explained rows)."""
        return self.step_stop - self.step_start

    @property
    def spans(self) -> list[tuple[int, int]]:
        """The positions ``[start, stop)`` each row explains: one token each unless ``units``."""
        if self.units is not None:
            return list(self.units)
        first = self.prompt_length + self.step_start
        return [(first + r, first + r + 1) for r in range(self.num_steps)]

    @property
    def num_rows(self) -> int:
        return len(self.units) if self.units is not None else self.num_steps


@dataclass(frozen=True)
class TargetRef:
    """One explained token (or unit): sequence ``job``, row ``row`` of its score matrix, from
    ``position`` up to ``stop`` (exclusive; ``position + 1`` for a token)."""

    job: int
    row: int
    position: int
    stop: int

    @property
    def length(self) -> int:
        """Tokens a model row needs: every position before the last explained one."""
        return self.stop - 1

    @property
    def is_unit(self) -> bool:
        """Whether the row explains a unit of several tokens (else one token)."""
        return self.stop > self.position + 1


def has_units(refs: Iterable[TargetRef]) -> bool:
    """Whether any of ``refs`` explains a unit of several tokens."""
    return any(r.is_unit for r in refs)


def targets_of(jobs: list[SequenceJob]) -> list[TargetRef]:
    """Every explained target of every job."""
    return [TargetRef(j, row, start, stop) for j, job in enumerate(jobs) for row, (start, stop) in enumerate(job.spans)]


def plan_batches(
    jobs: list[SequenceJob],
    rows_per_target: Callable[[int], int],
    rows_budget: Callable[[int], int],
    by_sequence: bool,
    max_targets: int | Callable[[int], int] = 64,
) -> list[list[TargetRef]]:
    """Group targets into batches.

    ``rows_per_target(length)`` is the method's cost of one target and ``rows_budget(length)``
    how many model rows of that length fit at once. Targets are sorted longest first so a batch
    holds rows of similar length (little padding). ``by_sequence`` keeps each batch within one
    sequence (for methods that share one forward pass among a sequence's targets). ``max_targets``
    (a number, or a function of the longest row's length) caps the targets of a batch. A batch never
    holds a row shorter than :data:`MIN_FILL` of its longest: rows are padded to the longest, and
    padding costs as much as tokens (it matters once forward-only batches grow large).
    """
    refs = targets_of(jobs)
    cap = max_targets if callable(max_targets) else (lambda length: max_targets)
    if by_sequence:
        batches: list[list[TargetRef]] = []
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
