"""StepBatch's shared masks: before_target, source_mask and predicting_positions."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genattrib.engine.contract import StepBatch

SETTINGS = settings(max_examples=50, deadline=None)  # the first call on a device (meta) is slow


@st.composite
def batches(draw) -> StepBatch:
    """Rows of length ``length`` with targets in [1, length - 1] (0 too, to check the clamp)."""
    length = draw(st.integers(min_value=1, max_value=9))
    rows = draw(st.integers(min_value=1, max_value=5))
    targets = draw(st.lists(st.integers(min_value=0, max_value=length - 1), min_size=rows, max_size=rows))
    special = draw(st.lists(st.lists(st.booleans(), min_size=length, max_size=length), min_size=rows, max_size=rows))
    ids = torch.arange(rows * length).view(rows, length)
    embeds = torch.zeros(rows, length, 2)
    return StepBatch(
        ids,
        embeds,
        embeds.clone(),
        torch.tensor(targets),
        torch.zeros(rows, dtype=torch.long),
        torch.tensor(special, dtype=torch.bool),
        torch.arange(rows),
    )


@SETTINGS
@given(batches())
def test_masks_follow_their_definitions(batch: StepBatch) -> None:
    before, sources, predicting = batch.before_target(), batch.source_mask(), batch.predicting_positions()
    assert before.dtype == sources.dtype == torch.bool and predicting.dtype == torch.long
    assert before.shape == sources.shape == (batch.num_rows, batch.length) and predicting.shape == (batch.num_rows,)
    for r in range(batch.num_rows):
        target = int(batch.target_positions[r])
        assert predicting[r] == max(target - 1, 0)
        for i in range(batch.length):
            assert bool(before[r, i]) == (i < target)
            assert bool(sources[r, i]) == (i < target and not bool(batch.special_mask[r, i]))


@SETTINGS
@given(batches())
def test_masks_equal_the_expressions_methods_wrote(batch: StepBatch) -> None:
    """The helpers replace these inline expressions exactly."""
    arange = torch.arange(batch.length).unsqueeze(0)
    assert torch.equal(batch.before_target("cpu"), arange < batch.target_positions.unsqueeze(1))
    assert torch.equal(
        batch.source_mask(torch.device("cpu")),
        ~batch.special_mask.cpu() & (torch.arange(batch.length) < batch.target_positions.cpu().unsqueeze(-1)),
    )
    assert torch.equal(batch.predicting_positions("cpu"), (batch.target_positions - 1).clamp(min=0))
    assert torch.equal(batch.source_mask(), batch.before_target() & batch.movable().squeeze(-1))


@SETTINGS
@given(batches())
def test_masks_land_on_the_requested_device(batch: StepBatch) -> None:
    meta = torch.device("meta")
    assert (
        batch.before_target(meta).device
        == batch.source_mask(meta).device
        == batch.predicting_positions(meta).device
        == meta
    )
    assert batch.before_target().device == batch.input_ids.device
