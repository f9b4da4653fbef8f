"""The rows to explain: each sequence's job and a reference to every row it explains.

Example:
    >>> jobs = [SequenceJob(torch.arange(6), prompt_length=3, step_start=0, step_stop=3)]
    >>> [t.position for t in rows_of(jobs)]
    [3, 4, 5]
    >>> units = SequenceJob(torch.arange(6), prompt_length=3, step_start=0, step_stop=3, units=[(3, 5), (5, 6)])
    >>> [(t.position, t.stop, t.length) for t in rows_of([units])]
    [(3, 5, 4), (5, 6, 5)]
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Int
from torch import Tensor


@dataclass
class SequenceJob:
    """One sequence to explain: ids (prompt + generated) and the generated steps to explain."""

    input_ids: Int[Tensor, " position"]
    prompt_length: int
    step_start: int
    step_stop: int
    held_fixed: Bool[Tensor, " position"] | None = None
    contrast_ids: Int[Tensor, " generated"] | None = None
    units: list[tuple[int, int]] | None = None  # explained units [start, stop) of positions; None: tokens
    source_groups: Int[Tensor, " position"] | None = None  # source unit of each position (-1: none)

    def __post_init__(self) -> None:
        if self.held_fixed is None:
            self.held_fixed = torch.zeros(self.input_ids.shape[0], dtype=torch.bool)

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
class RowRef:
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


def has_units(refs: Iterable[RowRef]) -> bool:
    """Whether any of ``refs`` explains a unit of several tokens."""
    return any(r.is_unit for r in refs)


def rows_of(jobs: list[SequenceJob]) -> list[RowRef]:
    """Every explained target of every job."""
    return [RowRef(j, row, start, stop) for j, job in enumerate(jobs) for row, (start, stop) in enumerate(job.spans)]
