"""Tensor shape aliases used across genattrib (jaxtyping).

Dimension names:
    generated: generated (target) steps of one sequence
    position: source positions (prompt + generated tokens)
    hidden: embedding (hidden) dimension
    row: rows of a model batch
"""

from __future__ import annotations

from jaxtyping import Bool, Float, Int
from torch import Tensor

__all__ = ["Bool", "Float", "Int", "Tensor"]
