"""The aggregator contract: ``agg(out)`` returns a new, aggregated result; ``out`` is unchanged.

Every aggregator is a small frozen object. :class:`Aggregator` applies :meth:`Aggregator.apply`
to each sequence, copies the provenance and records the step in ``provenance.aggregations``.

Example:
    >>> from genattrib.aggregation import Words
    >>> words = Words(how="sum")
    >>> merged = words(out)
    >>> merged.sequences[0].tokens
    ['The', ' capital', ' of', ' France', ' is', ' Paris', '.']
    >>> merged.provenance.aggregations
    ["words(how='sum', target_how=None, step_rules=None)"]
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, ClassVar

import torch
from jaxtyping import Float
from torch import Tensor

from genattrib.errors import InvalidArgumentError
from genattrib.output.attribution import FeatureAttributionOutput
from genattrib.output.provenance import Provenance
from genattrib.output.sequence import SequenceAttribution

__all__ = ["Aggregator", "check_output", "copy_sequence", "nan_after_targets", "recorded"]


class Aggregator:
    """Base class of every aggregation step.

    Subclasses implement :meth:`apply` (one sequence in, a new sequence out) or override
    :meth:`__call__` when they need the whole result (e.g. contrast pairs).

    Example:
        >>> class Identity(Aggregator):
        ...     name = "identity"
        ...     def apply(self, seq, index):
        ...         return copy_sequence(seq)
    """

    name: ClassVar[str] = "aggregator"

    def __call__(self, out: FeatureAttributionOutput) -> FeatureAttributionOutput:
        """A new result with every sequence aggregated; ``out`` is left unchanged."""
        check_output(out, self.name)
        sequences = [self.apply(seq, index) for index, seq in enumerate(out.sequences)]
        return FeatureAttributionOutput(sequences, recorded(out.provenance, self.describe()))

    def apply(self, seq: SequenceAttribution, index: int) -> SequenceAttribution:
        """Aggregate one sequence (``index`` is its place in the result, for error messages)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement apply()")

    def describe(self) -> str:
        """How this step is recorded in ``provenance.aggregations``, e.g. ``"words(how='sum')"``."""
        if dataclasses.is_dataclass(self):
            args = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self))
            return f"{self.name}({args})"
        return self.name


def check_output(out: object, step: str) -> None:
    """Raise unless ``out`` is a :class:`FeatureAttributionOutput` (the input of every step)."""
    if not isinstance(out, FeatureAttributionOutput):
        raise InvalidArgumentError(
            step, f"expected a FeatureAttributionOutput, got {type(out).__name__}", "pass the result of model.attribute"
        )


def recorded(provenance: Provenance, description: str) -> Provenance:
    """A copy of ``provenance`` with ``description`` appended to its ``aggregations``."""
    result = copy.deepcopy(provenance)
    result.aggregations = [*result.aggregations, description]
    return result


def nan_after_targets(
    values: Float[Tensor, "generated position *rest"], first_target: int | Sequence[int]
) -> Float[Tensor, "generated position *rest"]:
    """A copy of ``values`` with NaN at ``[j, i]`` for ``i >= first_target + j`` (the NaN
    invariant), or for ``i >= first_target[j]`` when each row's first target is given.

    Example:
        >>> nan_after_targets(torch.zeros(2, 3), 1).isnan().tolist()
        [[False, True, True], [False, False, True]]
        >>> nan_after_targets(torch.zeros(2, 3), [1, 3]).isnan().tolist()
        [[False, True, True], [False, False, False]]
    """
    k, n = int(values.shape[0]), int(values.shape[1])
    if isinstance(first_target, int):
        starts = torch.arange(k).unsqueeze(1) + first_target
    else:
        starts = torch.tensor(list(first_target), dtype=torch.long).view(k, 1)
    cols = torch.arange(n).unsqueeze(0)
    mask = cols >= starts
    while mask.ndim < values.ndim:
        mask = mask.unsqueeze(-1)
    return values.masked_fill(mask.to(values.device), math.nan)


def copy_sequence(seq: SequenceAttribution, **changes: Any) -> SequenceAttribution:
    """``dataclasses.replace`` that clones every tensor it keeps, so results share no storage."""

    def fresh(value: Any) -> Any:
        if isinstance(value, Tensor):
            return value.clone()
        if isinstance(value, dict):
            return {k: fresh(v) for k, v in value.items()}
        if isinstance(value, list):
            return list(value)
        return value

    kept = {f.name: fresh(getattr(seq, f.name)) for f in dataclasses.fields(seq) if f.name not in changes}
    return replace(seq, **kept, **changes)
