"""Context ablation: a sparse linear surrogate of every target over random keep-masks of source
units, in the style of ContextCite (Cohen-Wang et al., 2024).

Each of ``n_samples`` samples keeps every source unit (``sources=...``; each token without it)
with probability ``keep_prob`` and replaces the others by the baseline. One forward per sample
scores every target of the sequence at once (a causal model reads every target from one masked
copy), so the cost is ``n_samples`` rows per sequence whatever the number of targets. For each
target a sparse linear model ``F ≈ b + Σ_u w_u keep_u`` is fitted: the Lasso (coordinate
descent, penalty ``alpha`` on the mean squared error) or closed-form ridge; ``max_sources``
keeps only the largest coefficients. The weights are the scores (a unit's weight is shared
evenly among its positions). The fit is first made on all but the last ``holdout`` share of the
samples and its R² on those held-out samples is the step score ``surrogate_r2``; the reported
weights are then refitted on every sample. No gradients: it runs on models that give logits only.

A unit row (``explain="sentences"``) is regressed on every unit that can reach it, its own
earlier tokens included when they are sources (``sources_include_generated``), and reports the
units before it. Masks are seeded per unit (see :func:`~genattrib.methods.source_units.keep_masks`).

Example:
    >>> out = model.attribute("The capital of France is", target=" Paris.", method="context_ablation",
    ...                       sources=[(0, 3), (3, 6)], n_samples=32)
    >>> sorted(out.sequences[0].step_scores)
    ['surrogate_r2', 'target_value']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from genattrib.engine.contract import MethodOutput, MethodParams, RowBatch
from genattrib.engine.forward import ModelForward
from genattrib.methods.kinds import Perturbation, PerturbationTraits
from genattrib.methods.registration import register_method
from genattrib.methods.source_units import ablated_values, ablation_units, keep_masks, reaching_units, spread
from genattrib.methods.surrogates import SOLVERS, fit_surrogates, r_squared
from genattrib.targets import TargetFunction
from genattrib.validation import check_choice, check_int, check_number


@dataclass
class ContextAblationParams(MethodParams):
    n_samples: int = 64
    keep_prob: float = 0.5
    solver: str = "lasso"
    alpha: float = 0.01
    max_sources: int | None = None
    holdout: float = 0.25
    baseline: Any = None

    def validate(self) -> None:
        check_int("n_samples", self.n_samples, "n_samples=64", minimum=4)
        check_number("keep_prob", self.keep_prob, "keep_prob=0.5", low=0, high=1, strict=True)
        check_choice("solver", self.solver, SOLVERS, "solver")
        check_number("alpha", self.alpha, "alpha=0.01", low=0)
        if self.max_sources is not None:
            check_int("max_sources", self.max_sources, "max_sources=8", minimum=1)
        check_number("holdout", self.holdout, "holdout=0.25", low=0, high=1)
        if self.holdout > 0 and round(self.n_samples * self.holdout) < 2:
            check_int("n_samples", self.n_samples, f"n_samples={int(2 / self.holdout) + 1}", minimum=10**9)


@register_method
class ContextAblation(Perturbation):
    name = "context_ablation"
    description = "ContextCite-style sparse linear surrogate over random ablations of source units (forward only)"
    Params = ContextAblationParams
    traits = PerturbationTraits(
        stochastic=True,
        step_score_merge={
            "surrogate_r2": "none",  # held-out R² of one target's own fit: fits do not combine
            "target_value": "sum",  # F of the full input, summed like the rows it explains
        },
    )

    def rows_per_target(self, length: int) -> int:
        return self.params.n_samples

    def attribute(self, batch: RowBatch, forward: ModelForward, attributed_fn: TargetFunction) -> MethodOutput:
        p: ContextAblationParams = self.params
        members = ablation_units(batch)
        keep = keep_masks(batch, members, p.n_samples, p.keep_prob)
        drop = (~keep).float() @ members.float() > 0
        clean = torch.zeros(1, batch.length, dtype=torch.bool)  # sample 0 drops nothing: F(x)
        values = ablated_values(batch, forward, attributed_fn, torch.cat([clean, drop]))
        full, values = values[0], values[1:]
        weights, fit = self._fit_rows(keep, values, members, batch)
        return MethodOutput(
            spread(weights, members, batch.target_positions), {"surrogate_r2": fit, "target_value": full.cpu()}
        )

    def _fit_rows(
        self,
        keep: Bool[Tensor, "sample unit"],
        values: Float[Tensor, "sample row"],
        members: Bool[Tensor, "unit position"],
        batch: RowBatch,
    ) -> tuple[Float[Tensor, "row unit"], Float[Tensor, " row"]]:
        """Per row: weights over the units that can change it (fitted on all samples) and the
        R² on the held-out samples of a fit made without them."""
        p: ContextAblationParams = self.params
        reach = reaching_units(members, batch)
        z, y = keep.double(), values.double()
        fit = torch.full((batch.num_rows,), float("nan"))
        held = round(p.n_samples * p.holdout)
        if held and keep.shape[1]:
            w, b = fit_surrogates(z[:-held], y[:-held], reach, p.solver, p.alpha, p.max_sources)
            fit = r_squared(z[-held:] @ w.T + b, y[-held:]).float()
        if not keep.shape[1]:
            return torch.zeros(batch.num_rows, 0), fit
        w, _ = fit_surrogates(z, y, reach, p.solver, p.alpha, p.max_sources)
        return w.float(), fit
