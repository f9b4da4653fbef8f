"""Re-reduce granular scores over the hidden dimension, and normalise each generated step.

Example:
    >>> out.sequences[0].granular_scores.shape    # kept by default when they fit (keep_granular)
    torch.Size([3, 9, 32])
    >>> l2 = out.aggregate("l2")
    >>> normalized = out.aggregate(Normalize("sum-to-1"))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from genattrib.aggregation.base import Aggregator, copy_sequence, nan_after_targets
from genattrib.aggregation.hidden import HIDDEN_REDUCERS, reduce_hidden
from genattrib.errors import InvalidArgumentError, UnknownNameError
from genattrib.output.sequence import SequenceAttribution

__all__ = ["NORMALIZATIONS", "Normalize", "Reduce"]

NORMALIZATIONS = ("sum-to-1", "max-abs", "none")


@dataclass(frozen=True)
class Reduce(Aggregator):
    """Recompute ``scores`` from ``granular_scores`` with a hidden-dim reducer
    (``sum``, ``l2``, ``mean``, ``absmax``, ``max``); the current ``scores`` are replaced.

    Needs granular scores: attribute with ``keep_granular=True``.

    Example:
        >>> Reduce("l2")(out).sequences[0].scores.shape
        torch.Size([3, 9])
    """

    how: str = "sum"
    name: ClassVar[str] = "reduce"

    def __post_init__(self) -> None:
        if self.how not in HIDDEN_REDUCERS:
            raise UnknownNameError("how", self.how, HIDDEN_REDUCERS)

    def describe(self) -> str:
        return self.how

    def apply(self, seq: SequenceAttribution, index: int) -> SequenceAttribution:
        if seq.granular_scores is None:
            raise InvalidArgumentError(
                self.how,
                f"sequence {index} has no granular scores (granular_scores is None), so there is no hidden "
                "dimension to reduce",
                "attribute with keep_granular=True using an embedding-space method (saliency, "
                "input_x_gradient, integrated_gradients, gradient_shap), and reduce before "
                "aggregations that drop them",
            )
        scores = reduce_hidden(seq.granular_scores, self.how).to(seq.scores.dtype)
        return copy_sequence(seq, scores=nan_after_targets(scores, seq.target_positions))


@dataclass(frozen=True)
class Normalize(Aggregator):
    """Scale every generated step (row) of the scores:

    * ``"sum-to-1"``: divide by the row's sum of ``|scores|`` (so ``|scores|`` sums to 1; signs kept),
    * ``"max-abs"``: divide by the row's largest ``|score|`` (values in ``[-1, 1]``),
    * ``"none"``: leave the scores as they are.

    NaN stay NaN; rows whose total is 0 or not finite are left unchanged. Granular scores are
    scaled by the same factor, so a later hidden-dim reducer gives normalised scores too.

    Example:
        >>> Normalize("sum-to-1")(out).sequences[0].scores.abs().nansum(1).round(decimals=4)  # 1 up to rounding
        tensor([1., 1., 1.])
    """

    how: str = "sum-to-1"
    name: ClassVar[str] = "normalize"

    def __post_init__(self) -> None:
        if self.how not in NORMALIZATIONS:
            raise UnknownNameError("how", self.how, NORMALIZATIONS)

    def describe(self) -> str:
        return f"normalize({self.how!r})"

    def apply(self, seq: SequenceAttribution, index: int) -> SequenceAttribution:
        if self.how == "none" or seq.num_steps == 0 or seq.scores.shape[1] == 0:
            return copy_sequence(seq)
        size = seq.scores.abs()
        if self.how == "sum-to-1":
            total = size.nansum(1, keepdim=True)
        else:
            total = size.masked_fill(size.isnan(), 0.0).amax(1, keepdim=True)
        usable = torch.isfinite(total) & (total > 0)
        factor = torch.where(usable, 1.0 / total.where(usable, torch.ones_like(total)), torch.ones_like(total))
        granular = (
            None
            if seq.granular_scores is None
            else seq.granular_scores * factor.unsqueeze(-1).to(seq.granular_scores.dtype)
        )
        return copy_sequence(seq, scores=seq.scores * factor, granular_scores=granular)
