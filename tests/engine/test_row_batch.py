"""RowBatch's shared masks: before_target, source_mask, movable and predicting_positions, by
definition and by what they mean on a model."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny import make_model, make_tokenizer
from tolerance import OPS, assert_close_to_scale

from genattrib.engine.contract import RowBatch
from genattrib.engine.explained import Explained
from genattrib.engine.forward import ModelForward
from genattrib.targets import resolve_target

SETTINGS = settings(max_examples=50, deadline=None)  # the first call on a device (meta) is slow


@st.composite
def batches(draw) -> RowBatch:
    """Rows of length ``length`` with targets in [1, length - 1] (0 too, to check the clamp)."""
    length = draw(st.integers(min_value=1, max_value=9))
    rows = draw(st.integers(min_value=1, max_value=5))
    targets = draw(st.lists(st.integers(min_value=0, max_value=length - 1), min_size=rows, max_size=rows))
    special = draw(st.lists(st.lists(st.booleans(), min_size=length, max_size=length), min_size=rows, max_size=rows))
    ids = torch.arange(rows * length).view(rows, length)
    embeds = torch.zeros(rows, length, 2)
    return RowBatch(
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
def test_masks_follow_their_definitions(batch: RowBatch) -> None:
    before, sources, predicting = batch.before_target(), batch.source_mask(), batch.predicting_positions()
    assert before.dtype == sources.dtype == torch.bool and predicting.dtype == torch.long
    assert before.shape == sources.shape == (batch.num_rows, batch.length) and predicting.shape == (batch.num_rows,)
    for r in range(batch.num_rows):
        target = int(batch.target_positions[r])
        assert predicting[r] == max(target - 1, 0)
        for i in range(batch.length):
            assert bool(before[r, i]) == (i < target)
            assert bool(sources[r, i]) == (i < target and not bool(batch.held_fixed[r, i]))


@pytest.fixture(scope="module")
def tiny_forward() -> ModelForward:
    return ModelForward(make_model("llama", make_tokenizer()))


@settings(max_examples=20, deadline=None)
@given(st.integers(min_value=2, max_value=7), st.integers(min_value=0, max_value=2**31 - 1))
def test_only_positions_before_the_target_reach_its_value(tiny_forward: ModelForward, target: int, seed: int) -> None:
    """What the masks mean, checked on a model: a row's value reads the logits at
    ``predicting_positions()`` and so depends only on ``before_target()``; moving every other
    position (the target itself and what follows) leaves it as it was."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, tiny_forward.vocab_size, (1, 8), generator=generator)
    embeds = tiny_forward.embed(ids).detach()
    none_special = torch.zeros(1, 8, dtype=torch.bool)
    batch = RowBatch(ids, embeds, embeds, torch.tensor([target]), ids[:, target], none_special, torch.tensor([0]))
    logprob, explained = resolve_target("logprob"), batch.explained().map(lambda t: t.unsqueeze(1))  # [row, k=1, m]
    before = batch.before_target()
    moved = torch.where(before.unsqueeze(-1), embeds, torch.randn(embeds.shape, generator=generator))
    with torch.no_grad():
        value = tiny_forward.unit_values(embeds, explained, logprob)
        unchanged = tiny_forward.unit_values(moved, explained, logprob)
        logits = tiny_forward.head_logits(tiny_forward.hidden_states(embeds)[0, batch.predicting_positions()])
    assert_close_to_scale(unchanged, value, floor=OPS, what="value after moving positions from the target on")
    expected = torch.log_softmax(logits.float(), -1)[0, ids[0, target]]
    assert_close_to_scale(value.reshape(-1), expected.reshape(-1), floor=OPS, what="value read at predicting_positions")
    earlier = moved.clone()
    earlier[0, target - 1] += 1.0  # the position that predicts the target does change it
    with torch.no_grad():
        assert not torch.allclose(tiny_forward.unit_values(earlier, explained, logprob), value)


def test_a_unit_row_holds_its_own_tokens_fixed_but_not_what_precedes_them() -> None:
    """A unit row explains positions [2, 5) from positions 0-1: the unit's tokens that the model
    reads (2 and 3; 4 is only predicted) are not movable, special tokens never are, and
    source_mask() is before_target() without special tokens."""
    ids = torch.arange(7).unsqueeze(0)
    embeds = torch.zeros(1, 7, 2)
    special = torch.tensor([[True, False, False, False, False, False, False]])
    units = Explained(torch.tensor([[2, 3, 4]]), torch.tensor([[2, 3, 4]]), torch.ones(1, 3, dtype=torch.bool))
    first = torch.tensor([2])
    batch = RowBatch(ids, embeds, embeds, first, first, special, torch.tensor([0]), units=units)
    assert batch.movable().squeeze(-1).tolist() == [[False, True, False, False, True, True, True]]
    assert batch.source_mask().tolist() == [[False, True, False, False, False, False, False]]
    assert batch.unit_ends().tolist() == [4]


@SETTINGS
@given(batches())
def test_masks_land_on_the_requested_device(batch: RowBatch) -> None:
    meta = torch.device("meta")
    assert (
        batch.before_target(meta).device
        == batch.source_mask(meta).device
        == batch.predicting_positions(meta).device
        == meta
    )
    assert batch.before_target().device == batch.input_ids.device
