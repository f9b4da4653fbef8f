"""Many targets, one forward pass: input gradients of every target of a sequence read from
shared forward passes, with batched vector-Jacobian products.

A causal model computes the same hidden states at positions ``< t`` whatever comes after, so
every token target of a sequence can read its value from one forward pass over the longest
prefix it needs, and so can every path point that moves all positions together (integrated
gradients at a given ``alpha``). Gradients of ``k`` targets still need ``k`` backward passes, but
the forward pass and its activations are shared, and the ``k`` backward passes run as one
batched vector-Jacobian product (``torch.autograd.grad(..., is_grads_batched=True)``).

Sharing is not free: a target read from a longer row pays for the extra positions in its
backward pass. :func:`shared_groups` splits a sequence's targets into groups of nearby lengths by
the planner (:func:`~genattrib.engine.planner.plan_groups`, costed by
:mod:`~genattrib.engine.cost_model`), so one target per group (the old per-row path) is chosen
wherever it is cheaper.

Example:
    >>> costs = CostModel(1.0, 0.0, 0.0, call_overhead=4.0, seconds_per_token=1e-4)
    >>> shared_groups([5, 6, 7, 40], points=1, costs=costs)
    [[0, 1, 2], [3]]
    >>> shared_groups([20, 21, 22, 23], points=1, costs=costs)
    [[0, 1, 2, 3]]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from genattrib.engine.contract import MAX_BATCH_TARGETS, SHARED_BATCH_BYTES, RowBatch
from genattrib.engine.cost_model import BACKWARD_CALL, BATCHED_BACKWARD, CostModel, cost_model
from genattrib.engine.explained import Explained
from genattrib.engine.forward import ModelForward, is_oom, no_gradient_error
from genattrib.engine.planner import plan_groups
from genattrib.engine.row_refs import RowRef
from genattrib.targets import TargetFunction

#: How many points a group differentiates at: a number, or a function of the group's row length.
Points = int | Callable[[int], int]


def group_cost(length: int, targets: int, points: Points, costs: CostModel) -> float:
    """Cost in token-passes of ``targets`` targets read from ``points`` shared rows of ``length``
    tokens: per point a forward pass and a batched backward pass, and their two calls."""
    points = points(length) if callable(points) else points
    passes = 1.0 + BACKWARD_CALL + BATCHED_BACKWARD * targets
    return costs.row(length) * points * passes + 2 * costs.call_overhead


def shared_groups(lengths: Sequence[int], points: Points, costs: CostModel) -> list[list[int]]:
    """Split targets into groups that share forward rows, at the least modelled cost.

    ``lengths[i]`` is the row length target ``i`` needs; a group runs one row per point at the
    length of its longest member. Groups hold targets of consecutive lengths (the planner's
    dynamic program over the sorted lengths); the result lists indices into ``lengths``, shortest
    group first.
    """
    cost = lambda count, start, end: group_cost(end, count, points, costs)  # noqa: E731
    groups, _ = plan_groups([0] * len(lengths), lengths, cost)
    return [list(g.items) for g in groups]


def _read_rows(targets: Explained, length: int) -> Bool[Tensor, "k position"]:
    """The hidden-state rows each target reads (its slots' positions minus one)."""
    k = int(targets.positions.shape[0])
    rows = torch.zeros(k, length, dtype=torch.bool, device=targets.positions.device)
    index = (targets.positions - 1).clamp(min=0)
    rows[torch.arange(k, device=rows.device).unsqueeze(1).expand_as(index)[targets.mask], index[targets.mask]] = True
    return rows


@dataclass(frozen=True)
class PointSet:
    """The points a group of targets is differentiated at, built chunk by chunk (so ``count``
    rows never need to exist at once), each with a quadrature ``weight``.

    ``reduce(chunk, grads)`` turns the weighted gradients of a chunk's points, shaped
    ``[target, point, position, hidden]``, into each target's contribution ``[target, position,
    hidden]``; by default their sum.

    Example:
        >>> points = torch.zeros(3, 5, 8)
        >>> PointSet.of(points, torch.ones(3)).rows(slice(0, 2)).shape
        torch.Size([2, 5, 8])
    """

    count: int
    length: int
    weights: Float[Tensor, " point"]
    rows: Callable[[slice], Float[Tensor, "chunk position hidden"]]
    reduce: Callable[[slice, Float[Tensor, "k chunk position hidden"]], Float[Tensor, "k position hidden"]] | None = (
        None
    )

    @classmethod
    def of(
        cls,
        points: Float[Tensor, "point position hidden"],
        weights: Float[Tensor, " point"],
        multiplier: Float[Tensor, "point position hidden"] | None = None,
    ) -> PointSet:
        """Points given as one tensor (each gradient times ``multiplier[p]`` when given)."""
        reduce = None
        if multiplier is not None:
            reduce = lambda chunk, grads: (grads * multiplier[chunk].float().to(grads.device)).sum(1)  # noqa: E731
        return cls(int(points.shape[0]), int(points.shape[1]), weights, lambda chunk: points[chunk], reduce)


def _body_vjp(
    hidden: Float[Tensor, "point position hidden"],
    leaf: Tensor,
    head_grad: Float[Tensor, "point position hidden"],
    reads: Bool[Tensor, "k position"],
    per: int,
    reduce: Callable[[Tensor], Tensor],
) -> Float[Tensor, "k position hidden"]:
    """Each target's contribution (``reduce`` of its input gradients at the points): the backward
    pass from the hidden rows the target reads (``head_grad`` there) to the inputs, ``per``
    targets per batched pass."""
    k = int(reads.shape[0])
    parts = []
    reads = reads.to(head_grad.device)
    for start in range(0, k, per):
        stop = min(k, start + per)
        cotangent = head_grad.unsqueeze(0) * reads[start:stop, None, :, None].to(head_grad.dtype)
        last = stop == k
        if stop - start == 1:
            (grad,) = torch.autograd.grad(hidden, leaf, cotangent[0], retain_graph=not last)
            grad = grad.unsqueeze(0)
        else:
            (grad,) = torch.autograd.grad(hidden, leaf, cotangent, retain_graph=not last, is_grads_batched=True)
        parts.append(reduce(grad.float()))
    return torch.cat(parts)


def shared_input_gradients(
    forward: ModelForward,
    points: Float[Tensor, "point position hidden"] | PointSet,
    weights: Float[Tensor, " point"] | None,
    targets: Explained,
    attributed_fn: TargetFunction,
) -> tuple[Float[Tensor, "point k"], Float[Tensor, "k position hidden"]]:
    """Every target's value at every point, and ``sum_p weights[p] * dF_k/dx`` at ``points[p]``
    (or reduced as a :class:`PointSet` says, whose own weights are used).

    ``targets`` (shaped ``[k, m]``) is read from each point row: a causal model gives every
    target the value it has on its own prefix. Each target's value depends on the last hidden
    states only at the rows it reads, so one backward pass through the LM head gives every
    target's gradient there; the model body is then differentiated once per target, in batched
    vector-Jacobian products that keep the forward graph between them. Points run through the
    model in chunks sized to the memory budget (halved on out-of-memory). Gradients are float32.

    Example:
        >>> from genattrib.targets import resolve_target
        >>> fwd, ids = ModelForward(hf_model), out.sequences[0].input_ids[None]    # 9 tokens
        >>> targets = Explained.tokens(torch.tensor([6, 7]), ids[0, 6:8])          # 2 targets, one row
        >>> fn = resolve_target("logprob")
        >>> values, grads = shared_input_gradients(fwd, fwd.embed(ids), torch.ones(1), targets, fn)
        >>> values.shape, grads.shape
        (torch.Size([1, 2]), torch.Size([2, 9, 32]))
    """
    if not isinstance(points, PointSet):
        assert weights is not None
        points = PointSet.of(points, weights)
    n, length = points.count, points.length
    k, slots = int(targets.positions.shape[0]), targets.slots
    values = torch.empty(n, k, dtype=torch.float32, device=forward.head_device)
    grads: Tensor | None = None
    shared = targets.map(lambda t: t.unsqueeze(0))  # [1, k, m]: every target read from one row
    reads = _read_rows(targets, length)

    def run(chunk: slice) -> None:
        nonlocal grads
        rows = chunk.stop - chunk.start
        leaf = points.rows(chunk).detach().clone().requires_grad_(True)
        reduce = (lambda g: g.sum(1)) if points.reduce is None else (lambda g: points.reduce(chunk, g))  # noqa: E731
        with torch.enable_grad():
            hidden = forward.hidden_states(leaf)
            if not hidden.requires_grad:
                raise no_gradient_error(type(forward.model).__name__)
            head_in = hidden.detach().requires_grad_(True)
            value = forward.unit_values_from_hidden(
                head_in, shared.map(lambda t: t.expand(rows, *t.shape[1:])), attributed_fn
            )
            w = points.weights[chunk].to(device=value.device, dtype=value.dtype)
            (head_grad,) = torch.autograd.grad((value * w.unsqueeze(1)).sum(), head_in)
            per = max(1, forward.rows_per_chunk(length, grad=True, n_logits=k * slots) // rows)
            while True:
                try:
                    part = _body_vjp(hidden, leaf, head_grad.to(hidden.device), reads, per, reduce)
                    break
                except Exception as error:  # noqa: BLE001 - OOM: fewer targets per pass; else one at a time
                    if per == 1:
                        raise
                    # out of memory: halve the targets per pass; another error (an operation of the
                    # model without a batching rule): plain backward passes, one per target
                    per = max(1, per // 2) if is_oom(error) else 1
        values[chunk] = value.detach().float()
        grads = part if grads is None else grads.add_(part.to(grads.device))

    forward.run_chunked(n, length, run, grad=True, n_logits=k * slots, backward_per_row=k)
    assert grads is not None
    return values, grads


def shared_planned_rows(refs: Sequence[RowRef], forward: ModelForward, points: Points) -> list[tuple[int, int, int]]:
    """``(model rows, tokens per row, backward passes)`` of each group :func:`shared_row_groups`
    forms from a batch of one sequence's targets (for ``model.estimate()``)."""
    lengths = [r.length for r in refs]
    planned = []
    for group in shared_groups(lengths, points, cost_model(forward)):
        length = max(lengths[i] for i in group)
        count = points(length) if callable(points) else points
        planned.append((count, length, count * len(group)))
    return planned


def shared_row_groups(batch: RowBatch, forward: ModelForward, points: Points) -> list[Int[Tensor, " member"]]:
    """The rows of ``batch`` that read shared forward rows: per sequence, the groups of
    :func:`shared_groups` over each row's length (its last explained position)."""
    ends = batch.unit_ends("cpu")
    costs = cost_model(forward)
    groups = []
    for seq in batch.sequence_index.unique().tolist():
        rows = (batch.sequence_index.cpu() == seq).nonzero(as_tuple=True)[0]
        for members in shared_groups(ends[rows].tolist(), points, costs):
            groups.append(rows[torch.tensor(members, dtype=torch.long)])
    return groups


def grouped_input_gradients(
    batch: RowBatch,
    forward: ModelForward,
    attributed_fn: TargetFunction,
    points: Points,
    make_points: Callable[[int, int], PointSet],
) -> Float[Tensor, "row position hidden"]:
    """For every row ``r`` of each group of :func:`shared_row_groups` (``points`` of them per
    group, or a function of the group's length), its contribution at the points
    ``make_points(top, length)`` builds from the group's longest row ``top``, scattered into a
    ``[row, position, hidden]`` tensor (zero from the group's length on)."""
    x = batch.input_embeds
    out = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    ends = batch.unit_ends("cpu")
    targets = batch.explained()
    for members in shared_row_groups(batch, forward, points):
        top = int(members[ends[members].argmax()])
        length = int(ends[top])
        _, grads = shared_input_gradients(
            forward, make_points(top, length), None, targets.select(members), attributed_fn
        )
        out[members.to(x.device), :length] = grads.to(x.device)
    return out


def batch_input_gradients(
    batch: RowBatch,
    forward: ModelForward,
    attributed_fn: TargetFunction,
    path: tuple[Float[Tensor, " point"], Float[Tensor, " point"]] | None = None,
) -> Float[Tensor, "row position hidden"]:
    """Each row's input gradient at ``x`` (``path`` None), or ``sum_a w_a dF/dx`` at the points
    ``x' + a (x - x')`` of ``path = (alphas, weights)`` (x' = the baseline where movable), with
    the rows of each group of :func:`shared_row_groups` read from shared forward rows.

    Every row of a group must see the same points up to its own length: true of token rows of one
    sequence (unit rows hold their own unit fixed, so only saliency-like ``path=None`` shares them).
    """
    x = batch.input_embeds
    base = None if path is None else torch.where(batch.movable(), batch.baseline_embeds, x)

    def make_points(top: int, length: int) -> PointSet:
        row = x[top, :length]
        if path is None or base is None:
            return PointSet.of(row.unsqueeze(0), torch.ones(1))
        alphas, weights = path
        start = base[top, :length]
        a = alphas.to(device=x.device, dtype=x.dtype).view(-1, 1, 1)
        # each chunk's points are built when the chunk runs, not all n_steps up front
        return PointSet(int(a.shape[0]), length, weights, lambda chunk: start + a[chunk] * (row - start))

    return grouped_input_gradients(
        batch, forward, attributed_fn, 1 if path is None else int(path[0].shape[0]), make_points
    )


def shared_batch_targets(length: int, forward: ModelForward) -> int:
    """Targets per batch for a method whose targets share forward rows: at most
    :data:`MAX_BATCH_TARGETS`, fewer when their per-row tensors would pass :data:`SHARED_BATCH_BYTES`,
    and at most the user's ``max_rows`` (each target is a backward row). So ``max_rows`` also
    changes which targets share forward rows, one of the float-rounding differences measured in
    docs/architecture.md, "Chunking and results".

    Example:
        >>> fwd = ModelForward(hf_model)                                 # hidden size 32
        >>> shared_batch_targets(64, fwd), shared_batch_targets(65536, fwd)
        (64, 10)
    """
    per_row = 3 * 4 * max(1, length) * forward.hidden_size
    cap = min(MAX_BATCH_TARGETS, SHARED_BATCH_BYTES // per_row, forward.user_max_rows or MAX_BATCH_TARGETS)
    return max(1, cap)


#: Targets per batch for a forward-only method whose every row scores all targets of the sequence.
MAX_SAMPLE_BATCH_TARGETS = 1024


def sample_batch_targets(length: int, forward: ModelForward) -> int:
    """Targets per batch for a forward-only method whose rows are the sequence's perturbed copies,
    each scoring every target (occlusion): more targets cost no more rows, only their per-row
    tensors (ids, masks, scores: about 32 bytes per position, the embeddings being views of one
    row), so batches hold up to :data:`MAX_SAMPLE_BATCH_TARGETS` within :data:`SHARED_BATCH_BYTES`.

    Example:
        >>> fwd = ModelForward(hf_model)
        >>> sample_batch_targets(2048, fwd)
        1024
    """
    return max(1, min(MAX_SAMPLE_BATCH_TARGETS, SHARED_BATCH_BYTES // (32 * max(1, length))))
