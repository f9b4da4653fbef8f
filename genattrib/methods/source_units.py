"""Source units for perturbation methods: which positions are ablated together, and how a
unit's score is shared among its positions.

Without ``sources=`` every attributable position is its own unit (token-level ablation). With
``sources=`` (``RowBatch.source_groups``) a unit is every position of one group: occlusion,
LIME and the context-ablation surrogate then cost one model row per unit and sample, not per
token. A unit's score is shared evenly among its positions before each row's target, so that
summing the positions of a unit (``out.aggregate("sources")``) gives the unit's score back.

Example:
    >>> members = torch.tensor([[True, True, False], [False, False, True]])
    >>> spread(torch.tensor([[4.0, 1.0]]), members, torch.tensor([3]))
    tensor([[2., 2., 1.]])
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from genattrib.engine.contract import RowBatch
from genattrib.engine.forward import ModelForward
from genattrib.engine.prefix_cache import perturbed_values
from genattrib.seeding import content_generator
from genattrib.targets import TargetFunction


def ablation_units(batch: RowBatch) -> Bool[Tensor, "unit position"]:
    """The units of the batch's shared sequence (row 0): one per source group, or one per
    non-special position when there are no groups. Special tokens never belong to a unit."""
    special = batch.held_fixed[0].cpu()
    if batch.source_groups is None:
        positions = (~special).nonzero(as_tuple=True)[0]
        members = torch.zeros(int(positions.shape[0]), batch.length, dtype=torch.bool)
        members[torch.arange(int(positions.shape[0])), positions] = True
        return members
    groups = batch.source_groups[0].cpu().masked_fill(special, -1)
    ids = groups[groups >= 0].unique()
    return groups.unsqueeze(0) == ids.unsqueeze(1)


def keep_masks(
    batch: RowBatch, members: Bool[Tensor, "unit position"], n_samples: int, keep_prob: float
) -> Bool[Tensor, "sample unit"]:
    """Random keep-bits for every unit. A unit's bits come from a generator seeded by (seed, its
    first position, the tokens up to it), so batching and sequence order never change them."""
    ids = batch.input_ids[0].cpu()
    first = members.float().argmax(-1).tolist()
    cols = []
    for start in first:
        data = ids[: start + 1].numpy().astype("int64").tobytes() + int(start).to_bytes(8, "little")
        cols.append(torch.rand(n_samples, generator=content_generator(batch.seed, data)) < keep_prob)
    return torch.stack(cols, 1) if cols else torch.zeros(n_samples, 0, dtype=torch.bool)


def visible_counts(members: Bool[Tensor, "unit position"], starts: Int[Tensor, " row"]) -> Int[Tensor, "row unit"]:
    """How many positions of each unit lie before each row's first target."""
    before = torch.arange(members.shape[1]).unsqueeze(0) < starts.cpu().unsqueeze(1)
    return before.long() @ members.long().T


def reaching_units(members: Bool[Tensor, "unit position"], batch: RowBatch) -> Bool[Tensor, "row unit"]:
    """Units that can change each row's value: those starting before the row's last explained
    token (for a unit row, the dropped tokens of its own unit included)."""
    first = members.float().argmax(-1)
    return first.unsqueeze(0) < batch.unit_ends("cpu").unsqueeze(1)


def spread(
    effects: Float[Tensor, "row unit"], members: Bool[Tensor, "unit position"], starts: Int[Tensor, " row"]
) -> Float[Tensor, "row position"]:
    """Each unit's effect shared evenly among its positions before the row's target (0 elsewhere)."""
    effects, members = effects.float().cpu(), members.cpu()
    counts = visible_counts(members, starts)
    share = torch.where(counts > 0, effects / counts.clamp(min=1), torch.zeros_like(effects))
    before = torch.arange(members.shape[1]).unsqueeze(0) < starts.cpu().unsqueeze(1)
    return (share @ members.float()) * before


def ablate(
    x: Float[Tensor, "position hidden"],
    base: Float[Tensor, "position hidden"],
    drop: Bool[Tensor, "sample position"],
) -> Float[Tensor, "sample position hidden"]:
    """Copies of ``x`` with the ``drop`` positions of each sample replaced by the baseline."""
    drop = drop.to(x.device).unsqueeze(-1)
    return torch.where(drop, base.unsqueeze(0), x.unsqueeze(0))


def ablated_values(
    batch: RowBatch, forward: ModelForward, attributed_fn: TargetFunction, drop: Bool[Tensor, "sample position"]
) -> Float[Tensor, "sample row"]:
    """Every target's value on copies of the batch's shared sequence with the ``drop`` positions
    of each sample at the baseline: one model row per sample scores all targets, in chunks.
    Where it pays, a sample reruns only the positions from its first dropped one, over the clean
    sequence's KV cache (:func:`~genattrib.engine.prefix_cache.perturbed_values`)."""
    x, base = batch.input_embeds[0], batch.baseline_embeds[0]
    targets = batch.explained()
    reused = perturbed_values(forward, x, base, drop, targets, attributed_fn)
    if reused is not None:
        return reused
    values = torch.empty(int(drop.shape[0]), batch.num_rows, dtype=torch.float32)
    chunk = max(1, forward.rows_per_chunk(batch.length, grad=False, n_logits=batch.num_rows * targets.slots))
    for start in range(0, int(drop.shape[0]), chunk):
        rows = ablate(x, base, drop[start : start + chunk])
        values[start : start + rows.shape[0]] = forward.values(rows, targets.shared(rows.shape[0]), attributed_fn).cpu()
    return values
