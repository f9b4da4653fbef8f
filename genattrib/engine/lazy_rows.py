"""Rows of embeddings built chunk by chunk (path points that never exist all at once).

Example:
    >>> rows = LazyRows.of(torch.zeros(3, 4, 8))
    >>> rows.count, rows.length, rows.make(slice(0, 2)).shape
    (3, 4, torch.Size([2, 4, 8]))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from jaxtyping import Float
from torch import Tensor


@dataclass(frozen=True)
class LazyRows:
    """``count`` rows of ``length`` embeddings that ``make(chunk)`` builds for a slice of them
    (path points built chunk by chunk instead of all up front).

    Example:
        >>> x = torch.ones(4, 8)
        >>> rows = LazyRows(3, 4, lambda chunk: torch.arange(3.0)[chunk].view(-1, 1, 1) * x)
        >>> rows.make(slice(1, 3)).shape
        torch.Size([2, 4, 8])
    """

    count: int
    length: int
    make: Callable[[slice], Float[Tensor, "chunk position hidden"]]

    @classmethod
    def of(cls, embeds: Float[Tensor, "row position hidden"]) -> LazyRows:
        """Rows that already exist, as one tensor."""
        return cls(int(embeds.shape[0]), int(embeds.shape[1]), lambda chunk: embeds[chunk])
