"""Sparse linear surrogates, one per target, fitted in float64 without sklearn.

``lasso`` minimises ``||y - b - Z w||² / (2 n) + alpha ||w||_1`` by cyclic coordinate descent
(the objective of scikit-learn's ``Lasso``), every target at once; ``ridge`` minimises
``||y - b - Z w||² + alpha ||w||²`` in closed form. The intercept is never penalised. Each
target uses only the features ``reach`` allows. ``max_sources`` keeps the ``k`` largest ``|w|``
of each target (the intercept is refitted).

Example:
    >>> z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    >>> y = torch.stack([3 * z[:, 0] + 1.0, -2 * z[:, 1]], 1)       # two targets
    >>> w, b = fit_surrogates(z, y, solver="ridge", alpha=0.0)
    >>> (w.round(decimals=6) + 0.0).tolist(), (b.round(decimals=6) + 0.0).tolist()  # + 0.0: no -0.0
    ([[3.0, 0.0], [0.0, -2.0]], [1.0, 0.0])
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

#: The surrogate solvers.
SOLVERS = ("lasso", "ridge")


def _lasso(
    zc: Float[Tensor, "target sample feature"],
    yc: Float[Tensor, "target sample"],
    alpha: float,
    max_iter: int,
    tol: float,
) -> Float[Tensor, "target feature"]:
    """Coordinate descent on centred data, all targets together (a feature a target may not use
    is a zero column for it)."""
    rows, n, d = zc.shape
    w = torch.zeros(rows, d, dtype=zc.dtype)
    col_sq = (zc**2).sum(1)  # target, feature
    residual = yc.clone()
    threshold = alpha * n
    for _ in range(max_iter):
        largest = torch.zeros((), dtype=zc.dtype)
        for j in range(d):
            col = zc[:, :, j]
            old = w[:, j]
            rho = (col * residual).sum(-1) + old * col_sq[:, j]
            new = torch.sign(rho) * (rho.abs() - threshold).clamp(min=0) / col_sq[:, j].clamp(min=1e-300)
            new = torch.where(col_sq[:, j] > 0, new, torch.zeros_like(new))
            residual -= col * (new - old).unsqueeze(-1)
            largest = torch.maximum(largest, (new - old).abs().max())
            w[:, j] = new
        if float(largest) <= tol * max(1.0, float(w.abs().max())):
            break
    return w


def fit_surrogates(
    z: Float[Tensor, "sample feature"],
    y: Float[Tensor, "sample target"],
    reach: Bool[Tensor, "target feature"] | None = None,
    solver: str = "lasso",
    alpha: float = 0.01,
    max_sources: int | None = None,
    max_iter: int = 500,
    tol: float = 1e-7,
) -> tuple[Float[Tensor, "target feature"], Float[Tensor, " target"]]:
    """(weights, intercepts) of one linear fit ``y[:, t] ≈ b[t] + z @ w[t]`` per target ``t``."""
    z, y = z.double(), y.double()
    rows = int(y.shape[1])
    reach = torch.ones(rows, z.shape[1], dtype=torch.bool) if reach is None else reach
    zm, ym = z.mean(0), y.mean(0)
    zc = (z - zm).unsqueeze(0) * reach.unsqueeze(1).double()  # target, sample, feature
    yc = (y - ym).T  # target, sample
    if solver == "lasso":
        w = _lasso(zc, yc, alpha, max_iter, tol)
    else:
        eye = alpha * torch.eye(z.shape[1], dtype=z.dtype)
        gram = zc.transpose(1, 2) @ zc + eye
        w = torch.linalg.lstsq(gram, (zc.transpose(1, 2) @ yc.unsqueeze(-1))).solution.squeeze(-1)
        w = w * reach.double()
    if max_sources is not None and max_sources < w.shape[1]:
        drop = w.abs().argsort(dim=1, descending=True)[:, max_sources:]
        w = w.scatter(1, drop, 0.0)
    return w, ym - w @ zm


def r_squared(predicted: Float[Tensor, "sample ..."], y: Float[Tensor, "sample ..."]) -> Float[Tensor, " ..."]:
    """Coefficient of determination of ``predicted`` against ``y``, per target column (1 when
    ``y`` is constant and matched, 0 when constant and missed).

    Example:
        >>> round(float(r_squared(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 2.0, 4.0]))), 4)
        0.7857
    """
    total = ((y - y.mean(0)) ** 2).sum(0)
    residual = ((y - predicted) ** 2).sum(0)
    constant = torch.where(residual == 0, torch.ones_like(total), torch.zeros_like(total))
    return torch.where(total > 0, 1 - residual / total.clamp(min=1e-300), constant)
