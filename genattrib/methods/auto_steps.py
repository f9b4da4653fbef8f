"""``n_steps="auto"`` for the straight-line path methods (integrated gradients, SIG).

A row is first explained with :data:`START_STEPS` quadrature points; every row whose
quadrature error is above the tolerance is explained again with twice the points (the last try
at exactly ``max_steps``), until every row is within the tolerance or has reached the cap. The
error is ``|completeness_error|`` against ``tolerance * |F(x) - F(x')|`` for integrated
gradients; for SIG, whose scores need not add up to ``F(x) - F(x')`` (each position has its own
path), it is ``max_position_error`` (the worst position's miss of ``F(x) - F(x with that position
at baseline)``) against ``tolerance`` times the largest ``|score|`` of the row. Only the rows still
missing run again, each with its own path, so a row's scores do not depend on the other rows of
its batch. The points a row used are its step score ``n_steps_used``; a row stopped by the cap
keeps its (reported) error and a :class:`GenattribWarning` says so (once per call for IG,
:mod:`genattrib.models.results.convergence`).

Example:
    >>> out = model.attribute(prompt, " Paris", method="integrated_gradients", n_steps="auto",
    ...                       attributed_fn="probability", tolerance=0.05, max_steps=256)
    >>> out.sequences[0].step_scores["n_steps_used"]   # doctest: +SKIP
    tensor([32.])
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from genattrib.engine.contract import Attributor, MethodOutput, RowBatch
from genattrib.engine.forward import ModelForward
from genattrib.errors import GenattribWarning, InvalidArgumentError
from genattrib.targets import TargetFunction
from genattrib.validation import check_number, check_positive_int

AUTO = "auto"
#: Quadrature points of the first try.
START_STEPS = 16
#: An error this small (absolute) always counts as converged (F(x) = F(x') up to float noise).
ABSOLUTE_FLOOR = 1e-6


def is_auto(n_steps: Any) -> bool:
    """Whether ``n_steps`` asks for automatic steps."""
    return isinstance(n_steps, str) and n_steps == AUTO


def check_steps(n_steps: Any, tolerance: Any, max_steps: Any) -> None:
    """Validate ``n_steps`` (a positive int or ``"auto"``) and, for ``"auto"``, its
    ``tolerance`` (> 0) and ``max_steps`` (a positive int)."""
    if not is_auto(n_steps):
        if isinstance(n_steps, str):
            raise InvalidArgumentError(
                "n_steps", f"unknown value {n_steps!r}", "pass a positive int (e.g. n_steps=50) or n_steps='auto'"
            )
        check_positive_int("n_steps", n_steps, "n_steps=50, or n_steps='auto'")
    check_number("tolerance", tolerance, "tolerance=0.1 (a share of |F(x) - F(x')|)", low=0, strict=True)
    check_positive_int("max_steps", max_steps, "max_steps=512")


def planning_steps(n_steps: int | str, max_steps: int) -> int:
    """The points one try costs, as the batch planner sees it (the first try for ``"auto"``)."""
    return min(START_STEPS, max_steps) if is_auto(n_steps) else int(n_steps)


def step_sequence(max_steps: int) -> list[int]:
    """The point counts ``"auto"`` tries in turn: doubling from :data:`START_STEPS`, the last
    exactly ``max_steps``.

    Example:
        >>> step_sequence(100), step_sequence(8)
        ([16, 32, 64, 100], [8])
    """
    counts = [min(START_STEPS, max_steps)]
    while counts[-1] < max_steps:
        counts.append(min(2 * counts[-1], max_steps))
    return counts


def converged(error: Float[Tensor, " row"], delta: Float[Tensor, " row"], tolerance: float) -> Bool[Tensor, " row"]:
    """``|error| <= tolerance * |delta|`` (NaN never converges)."""
    return error.abs() <= tolerance * delta.abs() + ABSOLUTE_FLOOR


def position_scores(scores: Tensor, batch: RowBatch) -> Float[Tensor, "row position"]:
    """Each row's scores per attributable position (summed over hidden when granular), 0 elsewhere."""
    sums = scores.float().sum(-1) if scores.dim() == 3 else scores.float()
    return sums.nan_to_num(0.0) * batch.source_mask(sums.device)


def row_converged(out: MethodOutput, batch: RowBatch, tolerance: float) -> Bool[Tensor, " row"]:
    """Whether each row's quadrature error is within ``tolerance`` (see the module docstring)."""
    positions = position_scores(out.scores, batch)
    if "max_position_error" in out.step_scores:  # SIG: per-position completeness
        error = out.step_scores["max_position_error"].float()
        return converged(error, positions.to(error.device).abs().amax(-1), tolerance)
    error = out.step_scores["completeness_error"].float()
    return converged(error, positions.to(error.device).sum(-1) - error, tolerance)


def attribute_auto(
    method: Attributor, batch: RowBatch, forward: ModelForward, attributed_fn: TargetFunction
) -> MethodOutput:
    """Run ``method`` (whose ``n_steps`` is ``"auto"``) with doubling points until every row of
    ``batch`` meets ``method.params.tolerance`` or ``max_steps``; see the module docstring."""
    tolerance, max_steps = float(method.params.tolerance), int(method.params.max_steps)
    rows: Int[Tensor, " todo"] = torch.arange(batch.num_rows)
    result: MethodOutput | None = None
    used = torch.zeros(batch.num_rows, dtype=torch.float32)
    for steps in step_sequence(max_steps):
        part = batch if result is None else batch.select(rows)
        out = method.replace(n_steps=steps).attribute(part, forward, attributed_fn)
        if result is None:
            result = MethodOutput(out.scores.clone(), {k: v.clone() for k, v in out.step_scores.items()})
        else:
            result.scores[rows.to(result.scores.device)] = out.scores.to(result.scores.dtype)
            for name, values in out.step_scores.items():
                result.step_scores[name][rows.to(values.device)] = values
        used[rows] = float(steps)
        rows = rows[~row_converged(out, part, tolerance).cpu()]
        if not len(rows):
            break
    assert result is not None
    if len(rows) and not method.traits.promises_completeness:  # IG's cap is reported per call by the model wrapper
        warnings.warn(
            GenattribWarning(
                f"{method.name}: n_steps='auto' reached max_steps={max_steps} on some rows without meeting "
                f"tolerance={tolerance} (step scores n_steps_used, max_position_error); raise max_steps or tolerance"
            ),
            stacklevel=2,
        )
    device = result.step_scores["completeness_error"].device
    result.step_scores["n_steps_used"] = used.to(device)
    return result
