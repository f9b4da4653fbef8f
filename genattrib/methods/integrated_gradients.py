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
from jaxtyping import Float
from torch import Tensor

from genattrib.engine.contract import MethodOutput, MethodParams, RowBatch
from genattrib.engine.forward import ModelForward
from genattrib.engine.lazy_rows import LazyRows
from genattrib.engine.shared_forward import batch_input_gradients
from genattrib.methods.auto_steps import attribute_auto, check_steps, is_auto, planning_steps
from genattrib.methods.kinds import Gradient, GradientTraits
from genattrib.methods.quadrature import RULES, quadrature_rule
from genattrib.methods.registration import register_method
from genattrib.targets import TargetFunction
from genattrib.validation import check_choice


@dataclass
class IGParams(MethodParams):
    """``n_steps``: quadrature points, or ``"auto"`` (doubled until ``|completeness_error|`` is
    within ``tolerance`` of ``|F(x) - F(x')|``, at most ``max_steps``; see :mod:`auto_steps`)."""

    n_steps: int | str = 50
    quadrature: str = "gausslegendre"
    baseline: Any = None
    tolerance: float = 0.1  # read only with n_steps="auto"
    max_steps: int = 512  # read only with n_steps="auto"

    def validate(self) -> None:
        check_steps(self.n_steps, self.tolerance, self.max_steps)
        check_choice("quadrature", self.quadrature, RULES, "rule")


def path_points(batch: RowBatch, alphas: torch.Tensor) -> torch.Tensor:
    """Rows ``x' + a (x - x')`` for every row of ``batch`` and every ``a``: (row*step, L, d)."""
    x = batch.input_embeds
    base = torch.where(batch.movable(), batch.baseline_embeds, x)
    a = alphas.to(device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    points = base.unsqueeze(1) + a * (x - base).unsqueeze(1)
    return points.reshape(-1, x.shape[1], x.shape[2])


@register_method
class IntegratedGradients(Gradient):
    name = "integrated_gradients"
    description = "path integral of gradients from a baseline (Gauss-Legendre); sum over hidden"
    Params = IGParams
    traits = GradientTraits(
        promises_completeness=True,
        uses_baseline=True,
        shares_unit_rows=False,  # unit rows: each row its own path
        step_score_merge={
            "completeness_error": "sum",  # rows merged by sum explain the sum of F, so their errors add up
            "baseline_value": "sum",  # F at the baseline, summed like F
            "n_steps_used": "max",  # n_steps="auto": the points the row needed
        },
    )

    def path_points(self) -> int:
        return planning_steps(self.params.n_steps, self.params.max_steps)

    def reference_rows(self, length: int) -> int:
        return 2  # F(x') and F(x)

    def attribute(self, batch: RowBatch, forward: ModelForward, attributed_fn: TargetFunction) -> MethodOutput:
        p: IGParams = self.params
        if is_auto(p.n_steps):
            return attribute_auto(self, batch, forward, attributed_fn)
        alphas, weights = quadrature_rule(p.quadrature, p.n_steps)
        x = batch.input_embeds.float()
        base = torch.where(batch.movable(), batch.baseline_embeds, batch.input_embeds).float()
        if batch.units is None:  # token rows of a sequence share each path point: one forward per point
            avg_grad = batch_input_gradients(batch, forward, attributed_fn, (alphas, weights))
            f_base, f_input = _end_values(batch, forward, attributed_fn)
        else:  # a unit row holds its own unit fixed, so its path is its own
            avg_grad, f_base, f_input = _per_row_gradients(batch, forward, attributed_fn, alphas, weights)
        attributions = (x - base) * avg_grad
        valid = batch.before_target(x.device)
        total = (attributions.sum(-1) * valid).sum(-1)
        error = total.to(f_input.device) - (f_input - f_base)
        return MethodOutput(attributions, {"completeness_error": error, "baseline_value": f_base})


def _end_values(
    batch: RowBatch, forward: ModelForward, attributed_fn: TargetFunction
) -> tuple[Float[Tensor, " row"], Float[Tensor, " row"]]:
    """``F(x')`` and ``F(x)`` of every row, the rows of a sequence read from its longest row."""
    f_base = torch.empty(batch.num_rows, dtype=torch.float32, device=forward.head_device)
    f_input = torch.empty_like(f_base)
    targets, alphas = batch.explained(), torch.tensor([0.0, 1.0], dtype=torch.float64)
    for seq in batch.sequence_index.unique().tolist():
        members = (batch.sequence_index.cpu() == seq).nonzero(as_tuple=True)[0]
        top = members[batch.unit_ends("cpu")[members].argmax()].reshape(1)
        ends = path_points(batch.select(top), alphas)  # x' and x of the sequence's longest row only
        values = forward.values(ends, targets.select(members).shared(2), attributed_fn)
        f_base[members.to(f_base.device)], f_input[members.to(f_base.device)] = values[0], values[1]
    return f_base, f_input


def _per_row_gradients(
    batch: RowBatch, forward: ModelForward, attributed_fn: TargetFunction, alphas: Tensor, weights: Tensor
) -> tuple[Float[Tensor, "row position hidden"], Float[Tensor, " row"], Float[Tensor, " row"]]:
    """Each row's own path, ``n_steps`` model rows per row; the points of each chunk are built
    when the chunk runs (:class:`~genattrib.engine.forward.LazyRows`), and its gradients are added
    into each row's weighted sum at once."""
    steps = int(alphas.shape[0])
    x = batch.input_embeds
    base = torch.where(batch.movable(), batch.baseline_embeds, x)
    a = alphas.to(device=x.device, dtype=x.dtype)
    w = weights.to(device=x.device, dtype=torch.float32)
    avg_grad = torch.zeros(x.shape, dtype=torch.float32, device=x.device)

    def make(chunk: slice) -> Tensor:
        index = torch.arange(chunk.start, chunk.stop, device=x.device)
        row, step = index // steps, index % steps
        return base[row] + a[step].view(-1, 1, 1) * (x[row] - base[row])

    def add(chunk: slice, values: Tensor, grads: Tensor) -> None:
        index = torch.arange(chunk.start, chunk.stop, device=x.device)
        weighted = grads.to(x.device) * w[index % steps].view(-1, 1, 1)
        avg_grad.index_add_(0, index // steps, weighted)

    targets = batch.explained()
    rows = LazyRows(batch.num_rows * steps, batch.length, make)
    forward.gradients_by_chunk(rows, targets.repeat_interleave(steps), attributed_fn, add)
    ends = path_points(batch, torch.tensor([0.0, 1.0], dtype=torch.float64))
    values = forward.values(ends, targets.repeat_interleave(2).map(lambda t: t.unsqueeze(1)), attributed_fn)
    f_base, f_input = values.view(batch.num_rows, 2).unbind(-1)
    return avg_grad, f_base.contiguous(), f_input.contiguous()
