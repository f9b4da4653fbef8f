"""Integrated gradients along the straight line from a baseline to the input embeddings.

``IG_i = (x_i - x'_i) * sum_k w_k dF/dx_i(x' + a_k (x - x'))``; scores sum over hidden, so a
row's scores add up to ``F(x) - F(x')`` up to the quadrature error, which is reported as the
step score ``completeness_error``.

Example:
    >>> out = model.attribute("The capital of France is", method="integrated_gradients", n_steps=50, max_new_tokens=2)
    >>> error = out.sequences[0].step_scores["completeness_error"]   # per explained token
    >>> bool(error.abs().max() < 1e-3)
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from genattrib.engine.contract import Attributor, MethodOutput, MethodParams, StepBatch
from genattrib.engine.forward import ModelForward
from genattrib.methods.quadrature import RULES, quadrature_rule
from genattrib.targets import TargetFunction
from genattrib.validation import check_choice, check_positive_int


@dataclass
class IGParams(MethodParams):
    n_steps: int = 50
    quadrature: str = "gausslegendre"
    baseline: Any = None

    def validate(self) -> None:
        check_positive_int("n_steps", self.n_steps, "n_steps=50")
        check_choice("quadrature", self.quadrature, RULES, "rule")


def path_points(batch: StepBatch, alphas: torch.Tensor) -> torch.Tensor:
    """Rows ``x' + a (x - x')`` for every row of ``batch`` and every ``a``: (row*step, L, d)."""
    x = batch.input_embeds
    base = torch.where(batch.movable(), batch.baseline_embeds, x)
    a = alphas.to(device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    points = base.unsqueeze(1) + a * (x - base).unsqueeze(1)
    return points.reshape(-1, x.shape[1], x.shape[2])


class IntegratedGradients(Attributor):
    name = "integrated_gradients"
    description = "path integral of gradients from a baseline (Gauss-Legendre); sum over hidden"
    Params = IGParams
    granular = True
    default_reduction = "sum"
    uses_baseline = True
    step_score_merge = {
        "completeness_error": "sum",  # rows merged by sum explain the sum of F, so their errors add up
        "baseline_value": "sum",  # F at the baseline, summed like F
    }

    def rows_per_target(self, length: int) -> int:
        return self.params.n_steps + 2

    def attribute(self, batch: StepBatch, forward: ModelForward, attributed_fn: TargetFunction) -> MethodOutput:
        p: IGParams = self.params
        alphas, weights = quadrature_rule(p.quadrature, p.n_steps)
        n, steps = batch.num_rows, p.n_steps
        points = path_points(batch, alphas)
        targets = batch.targets()
        _, grads = forward.values_and_grads(points, targets.repeat_interleave(steps), attributed_fn)
        w = weights.to(device=grads.device, dtype=torch.float32).view(1, -1, 1, 1)
        avg_grad = (grads.view(n, steps, *grads.shape[1:]) * w).sum(1)
        x = batch.input_embeds.float()
        base = torch.where(batch.movable(), batch.baseline_embeds, batch.input_embeds).float()
        attributions = (x - base) * avg_grad
        ends = path_points(batch, torch.tensor([0.0, 1.0], dtype=torch.float64))
        values = forward.values(ends, targets.repeat_interleave(2).map(lambda t: t.unsqueeze(1)), attributed_fn)
        f_base, f_input = values.view(n, 2).unbind(-1)
        valid = batch.before_target(x.device)
        total = (attributions.sum(-1) * valid).sum(-1)
        error = total.to(f_input.device) - (f_input - f_base)
        return MethodOutput(attributions, {"completeness_error": error, "baseline_value": f_base})
