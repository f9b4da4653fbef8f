"""What each model row explains: one token, or a unit of several generated tokens whose values
combine into one (``F(unit) = sum of log-probs`` for ``logprob``: the target's ``merge`` rule).

A row of :class:`Explained` holds ``m`` slots (positions, token ids, contrast ids) and a mask;
a token-level row has one slot. Shapes carry any leading dimensions (``[row, m]`` for one
explained unit per row, ``[row, k, m]`` for ``k`` units read from one shared row).

Example:
    >>> units = Explained(torch.tensor([[4, 5, 6]]), torch.tensor([[7, 8, 9]]), torch.tensor([[True, True, False]]))
    >>> combine(torch.tensor([[-1.0, -2.0, -50.0]]), units.mask, "sum")
    tensor([-3.])
    >>> units.repeat_interleave(2).positions.shape
    torch.Size([2, 3])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from genattrib.errors import InvalidArgumentError

#: Merge rules a unit's value can be built with (``none`` does not combine several tokens).
UNIT_RULES = ("sum", "product", "mean", "max", "min", "first", "last")


@dataclass(frozen=True)
class Explained:
    """Positions (and their token ids) whose attributed values combine into each row's value."""

    positions: Int[Tensor, "*rows m"]
    ids: Int[Tensor, "*rows m"]
    mask: Bool[Tensor, "*rows m"]
    contrast: Int[Tensor, "*rows m"] | None = None

    @classmethod
    def tokens(
        cls, positions: Int[Tensor, " row"], ids: Int[Tensor, " row"], contrast: Int[Tensor, " row"] | None = None
    ) -> Explained:
        """One explained token per row."""
        mask = torch.ones(positions.shape[0], 1, dtype=torch.bool, device=positions.device)
        return cls(
            positions.unsqueeze(-1), ids.unsqueeze(-1), mask, None if contrast is None else contrast.unsqueeze(-1)
        )

    @property
    def slots(self) -> int:
        return int(self.positions.shape[-1])

    def map(self, fn: Callable[[Tensor], Tensor]) -> Explained:
        """The same function applied to every field (positions, ids, mask, contrast)."""
        return Explained(
            fn(self.positions), fn(self.ids), fn(self.mask), None if self.contrast is None else fn(self.contrast)
        )

    def repeat_interleave(self, n: int) -> Explained:
        """Each row ``n`` times in a row (one per path point or sample)."""
        return self.map(lambda t: t.repeat_interleave(n, 0))

    def select(self, rows: Tensor | slice) -> Explained:
        """The rows ``rows`` (an index tensor or a slice)."""
        return self.map(lambda t: t[rows.to(t.device) if isinstance(rows, Tensor) else rows])

    def shared(self, copies: int) -> Explained:
        """All rows as the ``k`` units of one shared row, for ``copies`` rows: ``[copies, k, m]``."""
        return self.map(lambda t: t.unsqueeze(0).expand(copies, *t.shape).contiguous())

    def to(self, device: torch.device | str) -> Explained:
        return self.map(lambda t: t.to(device))


def combine(values: Float[Tensor, "*rows m"], mask: Bool[Tensor, "*rows m"], rule: str) -> Float[Tensor, "*rows"]:
    """Combine the values of each row's slots by ``rule`` (one of :data:`UNIT_RULES`), ignoring
    masked-out slots (a slot is never masked before a kept one)."""
    mask = mask.to(values.device)
    if values.shape[-1] == 1:
        return values[..., 0]
    if rule == "sum":
        return values.masked_fill(~mask, 0.0).sum(-1)
    if rule == "product":
        return values.masked_fill(~mask, 1.0).prod(-1)
    if rule == "mean":
        return values.masked_fill(~mask, 0.0).sum(-1) / mask.sum(-1).clamp(min=1)
    if rule == "max":
        return values.masked_fill(~mask, -torch.inf).amax(-1)
    if rule == "min":
        return values.masked_fill(~mask, torch.inf).amin(-1)
    if rule == "first":
        return values[..., 0]
    if rule == "last":
        last = (mask.sum(-1, keepdim=True) - 1).clamp(min=0)
        return values.gather(-1, last).squeeze(-1)
    raise InvalidArgumentError(
        "attributed_fn",
        f"its merge rule {rule!r} cannot combine the tokens of a unit",
        f"explain tokens, or use a target whose merge rule is one of {', '.join(UNIT_RULES)} (logprob sums)",
    )
