"""Faithfulness metrics (``docs/evaluation.md``): each declares its name, range and direction.

Every metric maps an :class:`~genattrib.faithfulness.context.EvalContext` to one value per
evaluated step; the perturbed inputs of all steps go through the model together.

Example:
    >>> METRICS["comprehensiveness"].lower_is_better
    False
    >>> sorted(METRICS)[:3]
    ['aopc_comprehensiveness', 'aopc_sufficiency', 'comprehensiveness']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch
from jaxtyping import Float
from torch import Tensor

from genattrib.faithfulness.context import EvalContext
from genattrib.faithfulness.perturb import delete_top, insert_top, keep_top, replace_top, top_count
from genattrib.faithfulness.soft import soft_values

AOPC_PERCENTS = (1, 5, 10, 20, 50)
CURVE_PERCENTS = tuple(range(0, 101, 10))


@dataclass(frozen=True)
class MetricOptions:
    """Settings shared by the metrics: ``k`` (percent of tokens for comprehensiveness, sufficiency
    and log-odds) and how Soft-NS/NC turn scores into keep-probabilities."""

    k: float = 20.0
    soft_normalization: str = "sum"
    random_baseline: bool = True  # Soft-NS/NC: also score the random baseline (needed for their summary)


@dataclass(frozen=True)
class Metric:
    """One metric. ``summary`` is ``"mean"`` or ``"log_ratio"`` (ln Σ method / Σ random)."""

    name: str
    description: str
    lower_is_better: bool
    value_range: tuple[float, float]
    compute: Callable[[EvalContext, MetricOptions], tuple[Tensor, Tensor | None]]
    summary: str = "mean"
    uses_distribution: bool = False  # compares whole next-token distributions (needs q)

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "description": self.description,
            "lower_is_better": self.lower_is_better,
            "range": list(self.value_range),
            "summary": self.summary,
        }


def _per_step(ctx: EvalContext, build: Callable[[int], list[Tensor]]) -> tuple[list[Tensor], Tensor]:
    """Rows built for every step, flattened, with the step index of each row."""
    rows, index = [], []
    for i in range(ctx.steps.num_steps):
        made = build(i)
        rows.extend(made)
        index.extend([i] * len(made))
    return rows, torch.tensor(index, dtype=torch.long)


def _drop(ctx: EvalContext, percents: tuple[float | int, ...], how: str) -> Float[Tensor, "step k"]:
    """``P − P′`` (``how`` = delete | keep) or ``log P′ − log P`` (``replace``) for each k%."""
    steps = ctx.steps

    def build(i: int) -> list[Tensor]:
        ids, order = steps.prefixes[i], steps.order(i)
        tops = [top_count(k, int(order.shape[0])) for k in percents]
        if how == "delete":
            return [delete_top(ids, order, t) for t in tops]
        if how == "keep":
            return [keep_top(ids, order, t, steps.special[i]) for t in tops]
        return [replace_top(ids, order, t, ctx.baseline_id) for t in tops]

    rows, index = _per_step(ctx, build)
    perturbed = ctx.logprobs(rows, index).reshape(steps.num_steps, len(percents))
    reference = ctx.reference_logprobs.unsqueeze(-1)
    if how == "replace":
        return perturbed - reference
    return reference.exp() - perturbed.exp()


def _curve(ctx: EvalContext, insertion: bool) -> Float[Tensor, " step"]:
    steps = ctx.steps
    make = insert_top if insertion else replace_top

    def build(i: int) -> list[Tensor]:
        ids, order = steps.prefixes[i], steps.order(i)
        return [make(ids, order, top_count(k, int(order.shape[0])), ctx.baseline_id) for k in CURVE_PERCENTS]

    rows, index = _per_step(ctx, build)
    probs = ctx.logprobs(rows, index).exp().reshape(steps.num_steps, len(CURVE_PERCENTS))
    x = torch.tensor(CURVE_PERCENTS, dtype=torch.float32) / 100.0
    return torch.trapezoid(probs, x, dim=-1)


def _single(
    percent_of: Callable[[MetricOptions], float], how: str
) -> Callable[[EvalContext, MetricOptions], tuple[Tensor, None]]:
    return lambda ctx, opts: (_drop(ctx, (percent_of(opts),), how)[:, 0], None)


def _aopc(how: str) -> Callable[[EvalContext, MetricOptions], tuple[Tensor, None]]:
    return lambda ctx, opts: (_drop(ctx, AOPC_PERCENTS, how).sum(-1) / (len(AOPC_PERCENTS) + 1), None)


def _soft(which: str) -> Callable[[EvalContext, MetricOptions], tuple[Tensor, Tensor | None]]:
    def compute(ctx: EvalContext, opts: MetricOptions) -> tuple[Tensor, Tensor | None]:
        values = soft_values(ctx, opts.soft_normalization, opts.random_baseline)
        return values[which], values.get(f"random_{which}")

    return compute


_ALL = (
    Metric(
        "soft_ns",
        "Soft normalised sufficiency (Zhao & Aletras 2023); summary ln(Σ method / Σ random)",
        False,
        (0.0, 1.0),
        _soft("soft_ns"),
        "log_ratio",
        True,
    ),
    Metric(
        "soft_nc",
        "Soft normalised comprehensiveness (Zhao & Aletras 2023); summary ln(Σ method / Σ random)",
        False,
        (0.0, float("inf")),
        _soft("soft_nc"),
        "log_ratio",
        True,
    ),
    Metric(
        "comprehensiveness",
        "P − P′ after deleting the top-k% tokens",
        False,
        (-1.0, 1.0),
        _single(lambda o: o.k, "delete"),
    ),
    Metric("sufficiency", "P − P′ keeping only the top-k% tokens", True, (-1.0, 1.0), _single(lambda o: o.k, "keep")),
    Metric(
        "log_odds",
        "log P′ − log P after replacing the top-k% tokens by the baseline token",
        True,
        (float("-inf"), float("inf")),
        _single(lambda o: o.k, "replace"),
    ),
    Metric(
        "aopc_comprehensiveness",
        "comprehensiveness summed over k ∈ {1,5,10,20,50}% / 6 (ERASER)",
        False,
        (-1.0, 1.0),
        _aopc("delete"),
    ),
    Metric(
        "aopc_sufficiency", "sufficiency summed over k ∈ {1,5,10,20,50}% / 6 (ERASER)", True, (-1.0, 1.0), _aopc("keep")
    ),
    Metric(
        "deletion_auc",
        "area under P while the top tokens are replaced by the baseline, 0–100% in 10% steps",
        True,
        (0.0, 1.0),
        lambda ctx, opts: (_curve(ctx, insertion=False), None),
    ),
    Metric(
        "insertion_auc",
        "area under P while the top tokens are restored into an all-baseline input, 0–100%",
        False,
        (0.0, 1.0),
        lambda ctx, opts: (_curve(ctx, insertion=True), None),
    ),
)

METRICS: Mapping[str, Metric] = MappingProxyType({m.name: m for m in _ALL})
DEFAULT_METRICS = ("soft_ns", "soft_nc", "comprehensiveness", "sufficiency", "log_odds")


def list_metrics() -> list[str]:
    """Names of the faithfulness metrics."""
    return sorted(METRICS)
