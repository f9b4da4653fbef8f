"""How a step score of several generated tokens combines into one value (when aggregation merges
tokens into words, spans or sentences). Every target function and every method declares one of
these rules for each step score it produces.

Example:
    >>> import torch
    >>> STEP_RULES["product"](torch.tensor([0.5, 0.5])).item()
    0.25
    >>> STEP_RULES["none"](torch.tensor([0.9, 0.8])).isnan().item()
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import MappingProxyType

import torch
from torch import Tensor

__all__ = ["STEP_RULES"]


def _single(t: Tensor) -> Tensor:
    """The value of a one-token run; NaN for a run of several tokens (a score that does not merge)."""
    return t[0] if t.shape[0] == 1 else torch.full_like(t[0], math.nan)


#: Rule name → how the values of a run of generated tokens (first dimension) combine.
STEP_RULES: Mapping[str, Callable[[Tensor], Tensor]] = MappingProxyType(
    {
        "sum": lambda t: t.sum(0),
        "product": lambda t: t.prod(0),
        "mean": lambda t: t.mean(0),
        "max": lambda t: t.amax(0),
        "min": lambda t: t.amin(0),
        "first": lambda t: t[0],
        "last": lambda t: t[-1],
        "none": _single,  # not mergeable: kept for a one-token row, NaN for a merged one
    }
)
