"""Quadrature rules on [0, 1] for path-integral methods.

Example:
    >>> alphas, weights = quadrature_rule("gausslegendre", 4)
    >>> round(float(weights.sum()), 6)
    1.0
"""

from __future__ import annotations

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from genattrib.errors import UnknownNameError

RULES = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")


def quadrature_rule(rule: str, n_steps: int) -> tuple[Float[Tensor, " step"], Float[Tensor, " step"]]:
    """Nodes ``alpha`` in [0, 1] and weights summing to 1 for ``n_steps`` points."""
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(n_steps)
        alphas, w = (nodes + 1.0) / 2.0, weights / 2.0
    elif rule == "riemann_left":
        alphas, w = np.arange(n_steps) / n_steps, np.full(n_steps, 1.0 / n_steps)
    elif rule == "riemann_right":
        alphas, w = np.arange(1, n_steps + 1) / n_steps, np.full(n_steps, 1.0 / n_steps)
    elif rule == "riemann_middle":
        alphas, w = (np.arange(n_steps) + 0.5) / n_steps, np.full(n_steps, 1.0 / n_steps)
    elif rule == "riemann_trapezoid":
        if n_steps < 2:
            return torch.tensor([0.5], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64)
        alphas = np.linspace(0.0, 1.0, n_steps)
        w = np.full(n_steps, 1.0 / (n_steps - 1))
        w[0] = w[-1] = 0.5 / (n_steps - 1)
    else:
        raise UnknownNameError("method", rule, RULES)
    return torch.tensor(alphas, dtype=torch.float64), torch.tensor(w, dtype=torch.float64)
