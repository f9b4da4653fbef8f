"""Sequential integrated gradients (SIG; Enguehard, Findings ACL 2023).

For each source position ``i`` only that position moves, along ``x'_i + a (x_i - x'_i)``, while
every other position keeps its real embedding:

``SIG_{i,d} = (x_{i,d} - x'_{i,d}) * sum_k w_k dF/dx_{i,d}`` at those rows (only row i's gradient).

So ``sum_d SIG_{i,d} ~ F(x) - F(x with only i at its baseline)``; the largest deviation over
positions is reported as the step score ``max_position_error``, next to the library-wide
``completeness_error = sum(SIG) - (F(x) - F(x'))`` (x' = every movable position at baseline,
which SIG does not promise to match). The rows of many (target, position, step) triples share
model calls; ``position_chunk`` bounds how many (target, position) pairs are built at once.

Example:
    >>> method = "sequential_integrated_gradients"
    >>> out = model.attribute("The capital of France is", method=method, n_steps=50, max_new_tokens=1)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from genattrib.engine.contract import MethodOutput, RowBatch
from genattrib.engine.explained import Explained
from genattrib.engine.forward import ModelForward
from genattrib.engine.forward_mode import moved_position_sums
from genattrib.engine.prefix_cache import moved_gradients, perturbed_values
from genattrib.engine.row_refs import RowRef, has_units
from genattrib.engine.shared_forward import Points, PointSet, grouped_input_gradients
from genattrib.methods.auto_steps import attribute_auto, is_auto, planning_steps
from genattrib.methods.integrated_gradients import IGParams
from genattrib.methods.kinds import Gradient, GradientTraits, PlannedRows
from genattrib.methods.quadrature import quadrature_rule
from genattrib.methods.registration import register_method
from genattrib.targets import TargetFunction
from genattrib.validation import check_positive_int


@dataclass
class SIGParams(IGParams):
    """IG's parameters (``n_steps``, ``"auto"`` included with ``tolerance`` and ``max_steps``;
    ``quadrature``, ``baseline``) plus ``position_chunk``."""

    position_chunk: int | None = None

    def validate(self) -> None:
        super().validate()
        check_positive_int(
            "position_chunk", self.position_chunk, "position_chunk=8, or None to size it from memory", optional=True
        )


def _sharing_groups(batch: RowBatch) -> list[Tensor]:
    """Rows that can read their values from one copy of the longest: the rows of one sequence;
    each unit row alone (its own unit's tokens stay fixed, which another row's copy would move)."""
    if batch.units is not None:
        return [torch.tensor([r], device=batch.input_embeds.device) for r in range(batch.num_rows)]
    return [
        (batch.sequence_index == seq).nonzero(as_tuple=True)[0].to(batch.input_embeds.device)
        for seq in batch.sequence_index.unique().tolist()
    ]


def reference_values(
    batch: RowBatch, forward: ModelForward, attributed_fn: TargetFunction
) -> tuple[Float[Tensor, " row"], Float[Tensor, " row"], Float[Tensor, "row position"]]:
    """``F(x)``, ``F(x')`` and ``F(x with only i at baseline)`` for every row and position.

    Rows of one sequence share forward rows: a causal model reads every target of the sequence
    from one copy of its longest row, so this costs (movable positions + 2) forward rows per
    sequence in the batch."""
    x = batch.input_embeds
    base = torch.where(batch.movable(), batch.baseline_embeds, x)
    valid = batch.source_mask()
    f_input = torch.empty(batch.num_rows, dtype=torch.float32, device=forward.head_device)
    f_base = torch.empty_like(f_input)
    f_one = torch.full((batch.num_rows, batch.length), float("nan"), dtype=torch.float32, device=forward.head_device)
    targets = batch.explained()
    for members in _sharing_groups(batch):
        top = int(members[batch.target_positions[members].argmax()])
        cols = valid[top].nonzero(as_tuple=True)[0]
        values = _variant_values(
            forward, x[top], base[top], batch.movable()[top, :, 0], cols, targets.select(members), attributed_fn
        )
        heads = members.to(values.device)
        f_input[heads], f_base[heads] = values[0], values[1]
        for k, row in enumerate(members.tolist()):
            mine = valid[row, cols].to(values.device)
            f_one[row, cols.to(values.device)[mine]] = values[2:, k][mine]
    return f_input, f_base, f_one


def _variant_values(
    forward: ModelForward,
    x: Float[Tensor, "position hidden"],
    base: Float[Tensor, "position hidden"],
    movable: Bool[Tensor, " position"],
    cols: Int[Tensor, " col"],
    targets: Explained,
    attributed_fn: TargetFunction,
) -> Float[Tensor, "variant row"]:
    """Values of ``targets`` on ``x``, on ``x`` at its baseline, and on ``x`` with each of ``cols``
    alone at the baseline (over the clean prefix's KV cache where that pays)."""
    drop = torch.zeros(2 + cols.numel(), x.shape[0], dtype=torch.bool, device=x.device)
    drop[1] = movable.to(x.device)
    drop[2 + torch.arange(cols.numel(), device=x.device), cols.to(x.device)] = True
    reused = perturbed_values(forward, x, base, drop, targets, attributed_fn)
    if reused is not None:
        return reused.to(forward.head_device)
    variants = torch.where(drop.unsqueeze(-1), base.unsqueeze(0), x.unsqueeze(0))
    return forward.values(variants, targets.shared(variants.shape[0]), attributed_fn)


@register_method
class SequentialIntegratedGradients(Gradient):
    name = "sequential_integrated_gradients"
    description = "SIG: integrated gradients moving one position at a time, the others kept (Gauss-Legendre)"
    Params = SIGParams
    traits = GradientTraits(
        keeps_granular_by_default=False,  # the sum over the hidden size has a forward-mode path: far cheaper
        uses_baseline=True,
        shares_unit_rows=False,
        step_score_merge={
            "completeness_error": "sum",  # rows merged by sum explain the sum of F, so their errors add up
            "baseline_value": "sum",  # F at the baseline, summed like F
            "max_position_error": "max",  # a max over a row's positions: the max of the maxima is the word's max
            "n_steps_used": "max",  # n_steps="auto": the points the row needed
        },
    )

    def path_points(self) -> Points:
        steps = planning_steps(self.params.n_steps, self.params.max_steps)
        return lambda n: steps * n  # one path per position of the row

    def reference_rows(self, length: int) -> int:
        return length + 2  # F(x), F(x') and F(x with one position at baseline), per sequence

    def rows_per_target(self, length: int) -> int:
        return length * planning_steps(self.params.n_steps, self.params.max_steps) + 2

    def planned_rows(
        self, refs: Sequence[RowRef], forward: ModelForward, *, granular: bool = True
    ) -> list[PlannedRows]:
        steps, length = planning_steps(self.params.n_steps, self.params.max_steps), max(r.length for r in refs)
        references = (self.reference_rows(length), length, 0)
        if not granular and not has_units(refs):
            # forward mode: one dual row per (source position, step) of the sequence's longest row (at
            # most its full length; a dual row costs about cost_model.DUAL_PASS forward rows)
            return [(max(r.position for r in refs) * steps, length, 0), references]
        if has_units(refs):  # unit rows: (target, position) pairs of their own
            pairs = sum(r.position for r in refs)
            return [(pairs * steps, length, pairs * steps), references]
        return super().planned_rows(refs, forward, granular=granular)

    def attribute(self, batch: RowBatch, forward: ModelForward, attributed_fn: TargetFunction) -> MethodOutput:
        p: SIGParams = self.params
        if is_auto(p.n_steps):
            return attribute_auto(self, batch, forward, attributed_fn)
        alphas, weights = quadrature_rule(p.quadrature, p.n_steps)
        x = batch.input_embeds
        base = torch.where(batch.movable(), batch.baseline_embeds, x)
        attributions = None
        if batch.units is None and not batch.granular:  # only the sums over the hidden size are kept
            attributions = _forward_mode_sums(batch, forward, attributed_fn, alphas, weights)
        if attributions is None:
            if batch.units is None:  # token rows: every target of a sequence reads each moved copy
                avg_grad = _shared_gradients(batch, forward, attributed_fn, alphas, weights)
            else:
                avg_grad = self._per_pair_gradients(batch, forward, attributed_fn, alphas, weights)
            attributions = (x.float() - base.float()) * avg_grad
        f_input, f_base, f_one = reference_values(batch, forward, attributed_fn)
        position_sums = (attributions.sum(-1) if attributions.dim() == 3 else attributions).to(f_one.device)
        position_error = (position_sums - (f_input.unsqueeze(1) - f_one)).abs().nan_to_num(0.0).amax(-1)
        total = position_sums.masked_fill(~batch.source_mask(f_one.device), 0.0).sum(-1)
        return MethodOutput(
            attributions,
            {
                "completeness_error": total - (f_input - f_base),
                "baseline_value": f_base,
                "max_position_error": position_error,
            },
        )

    def _per_pair_gradients(
        self, batch: RowBatch, forward: ModelForward, attributed_fn: TargetFunction, alphas: Tensor, weights: Tensor
    ) -> Float[Tensor, "row position hidden"]:
        """Unit rows hold their own unit fixed: ``n_steps`` rows per (row, position) pair, over the
        clean prefix's KV cache where that pays."""
        p: SIGParams = self.params
        x = batch.input_embeds
        base = torch.where(batch.movable(), batch.baseline_embeds, x)
        steps, length, hidden = p.n_steps, batch.length, x.shape[-1]
        a = alphas.to(device=x.device, dtype=x.dtype).view(1, steps, 1)
        w = weights.to(device=x.device, dtype=torch.float32).view(1, steps, 1)
        items = batch.source_mask().nonzero()
        targets = batch.explained()
        chunk = p.position_chunk or max(1, forward.rows_per_chunk(length) // steps)
        avg_grad = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
        rows, cols = items.unbind(-1)
        moving = base[rows, cols].unsqueeze(1) + a * (x[rows, cols] - base[rows, cols]).unsqueeze(1)
        reused = moved_gradients(forward, x, rows, cols, moving, targets.select(rows), attributed_fn)
        if reused is not None:  # the clean prefix of each row came from its KV cache
            avg_grad[rows, cols] = (reused.to(x.device) * w).sum(1)
            items = items[:0]
        for start in range(0, int(items.shape[0]), chunk):
            rows, cols = items[start : start + chunk].unbind(-1)
            n = int(rows.shape[0])
            points = x[rows].unsqueeze(1).repeat(1, steps, 1, 1)
            moving = base[rows, cols].unsqueeze(1) + a * (x[rows, cols] - base[rows, cols]).unsqueeze(1)
            points[torch.arange(n, device=x.device), :, cols] = moving
            _, grads = forward.values_and_grads(
                points.view(n * steps, length, hidden), targets.select(rows).repeat_interleave(steps), attributed_fn
            )
            own = grads.view(n, steps, length, hidden)[torch.arange(n, device=grads.device), :, cols.to(grads.device)]
            avg_grad[rows, cols] = (own.to(x.device) * w).sum(1)
        return avg_grad


def _forward_mode_sums(
    batch: RowBatch, forward: ModelForward, attributed_fn: TargetFunction, alphas: Tensor, weights: Tensor
) -> Float[Tensor, "row position"] | None:
    """SIG summed over the hidden size, ``sum_k w_k (x_i - x'_i) . dF/dx_i``, for every row and
    source position: one forward-mode pass per (position, step) copy of a sequence's longest row
    serves every target of the sequence (:func:`~genattrib.engine.forward_mode.moved_position_sums`).
    ``None`` when the model has no forward mode (then the reverse-mode path runs)."""
    x = batch.input_embeds
    base = torch.where(batch.movable(), batch.baseline_embeds, x)
    valid = batch.source_mask("cpu")
    out = torch.zeros(batch.num_rows, batch.length, dtype=torch.float32)
    targets = batch.explained()
    for members in _sharing_groups(batch):
        top = int(members[batch.target_positions[members].argmax()])
        cols = valid[top].nonzero(as_tuple=True)[0]
        sums = moved_position_sums(
            forward, x[top], base[top], cols, alphas, weights, targets.select(members), attributed_fn
        )
        if sums is None:
            return None
        rows = members.cpu()
        out[rows.unsqueeze(1), cols.unsqueeze(0)] = sums.T * valid[rows][:, cols]
    return out.to(x.device)


def _shared_gradients(
    batch: RowBatch, forward: ModelForward, attributed_fn: TargetFunction, alphas: Tensor, weights: Tensor
) -> Float[Tensor, "row position hidden"]:
    """``sum_k w_k dF/dx_i`` with only position ``i`` moved to ``a_k``, for every row and source
    position ``i``: each moved copy of a group's longest row serves every target of the group
    (a target before ``i`` gets a zero gradient there, as causality says), and each point gives
    only its moved position's gradient."""
    x = batch.input_embeds
    base = torch.where(batch.movable(), batch.baseline_embeds, x)
    valid = batch.source_mask()
    steps = int(alphas.shape[0])

    def make_points(top: int, length: int) -> PointSet:
        cols = valid[top, :length].nonzero(as_tuple=True)[0]
        col_of = cols.repeat_interleave(steps)
        alpha_of = alphas.to(device=x.device, dtype=x.dtype).repeat(int(cols.shape[0]))
        row, start = x[top, :length], base[top, :length]

        def rows(chunk: slice) -> Tensor:
            c, a = col_of[chunk], alpha_of[chunk].unsqueeze(-1)
            out = row.unsqueeze(0).repeat(int(c.shape[0]), 1, 1)
            out[torch.arange(int(c.shape[0]), device=x.device), c] = start[c] + a * (row[c] - start[c])
            return out

        def reduce(chunk: slice, grads: Tensor) -> Tensor:
            c = col_of[chunk].to(grads.device)
            own = grads[:, torch.arange(int(c.shape[0]), device=grads.device), c]  # [k, chunk, hidden]
            return grads.new_zeros(grads.shape[0], length, grads.shape[-1]).index_add_(1, c, own)

        return PointSet(int(col_of.shape[0]), length, weights.repeat(int(cols.shape[0])), rows, reduce)

    return grouped_input_gradients(batch, forward, attributed_fn, lambda n: steps * n, make_points)
