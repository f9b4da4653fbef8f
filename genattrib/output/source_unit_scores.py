"""A result's scores per source unit: a small (rows × source units) matrix with the units' texts.

``attribute(..., sources="sentences")`` records its source units (``seq.source_spans``);
:meth:`SequenceAttribution.source_unit_scores` sums each row over each unit's positions and
keeps only those columns, so column ``u`` is unit ``u`` (``out.aggregate("sources")`` merges the
units too, but keeps every other position as a column of its own).

Example:
    >>> out = model.attribute(prompt, target=" Paris.", method="occlusion", sources=[(0, 3), (3, 6)])
    >>> units = out.sequences[0].source_unit_scores()
    >>> units.scores.shape                          # (rows, source units)
    torch.Size([3, 2])
    >>> units.unit_texts, units.row_texts
    (['The capital of', ' France is'], [' Par', 'is', '.'])
    >>> units.top(0, k=1)                           # row 0's largest unit by |score|
    [(1, ' France is', ...)]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

__all__ = ["SourceUnitScores", "sum_over_units"]

CHUNK_ROWS = 512  # rows summed at once (a top-k or streamed store is read in row chunks)


@dataclass(frozen=True)
class SourceUnitScores:
    """Every row's score for every source unit.

    ``scores[j, u]`` is the sum of row ``j``'s scores over the positions of source unit ``u``
    (``unit_spans[u] = (start, stop)``, text ``unit_texts[u]``); it is NaN when the unit holds a
    position at or after what the row explains (a unit of generated text, with
    ``sources_include_generated=True``). Row ``j`` explains ``row_texts[j]`` (positions
    ``row_spans[j]``); ``unit_roles`` gives each unit's chat role (``None`` without a chat prompt).
    """

    scores: Float[Tensor, "row unit"]
    unit_spans: list[tuple[int, int]]
    unit_texts: list[str]
    row_spans: list[tuple[int, int]]
    row_texts: list[str]
    unit_roles: list[str] | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, units)``."""
        return int(self.scores.shape[0]), int(self.scores.shape[1])

    def top(self, row: int, k: int = 3) -> list[tuple[int, str, float]]:
        """The ``k`` units of ``row`` with the largest ``|score|``: ``(unit, text, score)``; NaN
        units are left out, ties go to the earlier unit."""
        values = self.scores[row].detach().to("cpu", torch.float64)
        size = torch.where(torch.isfinite(values), values.abs(), torch.full_like(values, -1.0))
        order = torch.sort(size, descending=True, stable=True).indices.tolist()
        ranked = [u for u in order if float(size[u]) >= 0][:k]
        return [(u, self.unit_texts[u], float(values[u])) for u in ranked]

    def to_lists(self) -> dict[str, list]:
        """Plain Python lists (for JSON, a DataFrame or a spreadsheet): ``units``, ``rows`` and
        ``scores`` (NaN as ``None``)."""
        rows = [[None if v != v else v for v in row] for row in self.scores.tolist()]
        return {"units": list(self.unit_texts), "rows": list(self.row_texts), "scores": rows}


def sum_over_units(
    scores: Float[Tensor, "row position"], spans: Sequence[tuple[int, int]]
) -> Float[Tensor, "row unit"]:
    """Sum every row over each span of positions (NaN in a span gives NaN), in row chunks.

    Example:
        >>> sum_over_units(torch.tensor([[1.0, 2.0, 3.0], [1.0, float("nan"), 0.0]]), [(0, 2), (2, 3)]).tolist()
        [[3.0, 3.0], [nan, 0.0]]
    """
    out = torch.empty(scores.shape[0], len(spans), dtype=scores.dtype)
    for r0 in range(0, scores.shape[0], CHUNK_ROWS):
        chunk = scores[r0 : r0 + CHUNK_ROWS].detach().cpu()
        for u, (a, b) in enumerate(spans):
            out[r0 : r0 + CHUNK_ROWS, u] = chunk[:, a:b].sum(1)
    return out
