"""Reducers over the hidden dimension of granular scores.

Example:
    >>> import torch
    >>> reduce_hidden(torch.ones(2, 3, 4), "sum")[0, 0].item()
    4.0
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

import torch
from jaxtyping import Float
from torch import Tensor

from genattrib.errors import UnknownNameError

HIDDEN_REDUCERS: Mapping[str, Callable[[Tensor], Tensor]] = MappingProxyType(
    {
        "sum": lambda t: t.sum(-1),
        "l2": lambda t: t.norm(dim=-1),
        "mean": lambda t: t.mean(-1),
        "absmax": lambda t: t.gather(-1, t.abs().argmax(-1, keepdim=True)).squeeze(-1),
        "max": lambda t: t.amax(-1),
    }
)


def reduce_hidden(scores: Float[Tensor, "... hidden"], how: str = "sum") -> Float[Tensor, ...]:
    """Reduce the last (hidden) dimension with ``how`` in :data:`HIDDEN_REDUCERS`."""
    if how not in HIDDEN_REDUCERS:
        raise UnknownNameError("reduction", how, HIDDEN_REDUCERS)
    with torch.no_grad():
        return HIDDEN_REDUCERS[how](scores)
