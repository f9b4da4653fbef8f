"""Per-example means, the summaries the metrics report, and 95% bootstrap intervals over examples.

Example:
    >>> values = torch.tensor([1.0, 2.0, 3.0, 4.0]); example = torch.tensor([0, 0, 1, 1])
    >>> per_example_means(values, example).tolist()
    [1.5, 3.5]
    >>> s = summarize(per_example_means(values, example), None, "mean", n_resamples=200, seed=0)
    >>> s.low <= s.value <= s.high
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from genattrib.seeding import DEFAULT_SEED

LOG_RATIO_EPS = 1e-12


@dataclass(frozen=True)
class Interval:
    """A point estimate with its 95% bootstrap interval over ``n`` examples."""

    value: float
    low: float
    high: float
    n: int

    def to_dict(self) -> dict[str, float | int]:
        return {"value": self.value, "low": self.low, "high": self.high, "n": self.n}


def per_example_means(values: Float[Tensor, " step"], example: Int[Tensor, " step"]) -> Float[Tensor, " example"]:
    """Mean over the steps of each example present (NaN steps ignored), in example order."""
    out = []
    for e in torch.unique(example).tolist():
        picked = values[example == e]
        picked = picked[~picked.isnan()]
        out.append(picked.mean() if picked.numel() else torch.tensor(float("nan")))
    return torch.stack(out).float() if out else torch.empty(0)


def _statistic(method: Tensor, random: Tensor | None, how: str) -> Tensor:
    """``how="mean"``: mean over examples (last dim). ``"log_ratio"``: ln(Σ method / Σ random)."""
    if how == "mean":
        return method.nanmean(-1)
    return torch.log((method.nansum(-1) + LOG_RATIO_EPS) / (random.nansum(-1) + LOG_RATIO_EPS))


def summarize(
    method: Float[Tensor, " example"],
    random: Float[Tensor, " example"] | None,
    how: str,
    n_resamples: int = 1000,
    seed: int = DEFAULT_SEED,
) -> Interval:
    """Point estimate and percentile-bootstrap 95% interval, resampling examples with replacement."""
    n = int(method.shape[0])
    if how == "log_ratio" and random is None:
        raise ValueError("log_ratio needs the random baseline's values")
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    point = float(_statistic(method, random, how))
    gen = torch.Generator().manual_seed(int(seed))
    picks = torch.randint(0, n, (int(n_resamples), n), generator=gen)
    resampled = _statistic(method[picks], None if random is None else random[picks], how)
    resampled = resampled[~resampled.isnan()]
    if resampled.numel() == 0:
        return Interval(point, math.nan, math.nan, n)
    low, high = torch.quantile(resampled.double(), torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return Interval(point, float(low), float(high), n)
