"""Gradient SHAP: expected gradients at random points between baseline and (noisy) input.

For each of ``n_samples`` draws: ``x~ = x + N(0, stdevs^2)``, ``a ~ U(0, 1)``, gradient at
``x' + a (x~ - x')`` times ``(x~ - x')``; the scores are the mean over draws (sum over hidden).
Draws are seeded per (seed, sequence, target position), so batching never changes the result.

Example:
    >>> out = model.attribute(prompt, method="gradient_shap", n_samples=20, seed=0, max_new_tokens=2)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from genattrib.engine.contract import Attributor, MethodOutput, MethodParams, StepBatch
from genattrib.engine.forward import ModelForward
from genattrib.targets import TargetFunction
from genattrib.validation import check_number, check_positive_int


@dataclass
class GradientShapParams(MethodParams):
    n_samples: int = 20
    stdevs: float = 0.0
    baseline: Any = None

    def validate(self) -> None:
        check_positive_int("n_samples", self.n_samples, "n_samples=20")
        check_number("stdevs", self.stdevs, "stdevs=0.09", low=0, what="a float")


class GradientShap(Attributor):
    name = "gradient_shap"
    description = "expected gradients at random points between baseline and noisy input (seeded)"
    Params = GradientShapParams
    granular = True
    default_reduction = "sum"
    uses_baseline = True
    stochastic = True

    def rows_per_target(self, length: int) -> int:
        return self.params.n_samples

    def attribute(self, batch: StepBatch, forward: ModelForward, attributed_fn: TargetFunction) -> MethodOutput:
        p: GradientShapParams = self.params
        x = batch.input_embeds.float()
        movable = batch.movable()
        base = torch.where(movable, batch.baseline_embeds, batch.input_embeds).float()
        noisy, alphas = [], []
        for row in range(batch.num_rows):
            gen = batch.row_generator(row, torch.device("cpu"))
            own = int(batch.target_positions[row])  # draw only for the row's own prefix
            noise = torch.zeros((p.n_samples, *x.shape[1:]))
            noise[:, :own] = torch.randn((p.n_samples, own, x.shape[2]), generator=gen) * p.stdevs
            noisy.append(x[row].unsqueeze(0) + noise.to(x.device) * movable[row])
            alphas.append(torch.rand(p.n_samples, generator=gen).to(x.device))
        x_noisy = torch.stack(noisy)  # row, sample, L, d
        a = torch.stack(alphas).view(batch.num_rows, p.n_samples, 1, 1)
        delta = x_noisy - base.unsqueeze(1)
        points = (base.unsqueeze(1) + a * delta).to(batch.input_embeds.dtype)
        _, grads = forward.values_and_grads(
            points.reshape(-1, *x.shape[1:]), batch.targets().repeat_interleave(p.n_samples), attributed_fn
        )
        grads = grads.view(batch.num_rows, p.n_samples, *x.shape[1:])
        return MethodOutput((grads * delta.to(grads.device)).mean(1))
