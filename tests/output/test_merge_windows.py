"""``FeatureAttributionOutput.merge`` stitches ``attr_pos_start``/``attr_pos_end`` windows of one
sequence into one sequence equal to a single call over their union; different sequences and
repeats stay as they were; overlaps and gaps are refused."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_output_io import small_sequence
from tolerance import TINY_MODEL, assert_same_sequence

from genattrib import FeatureAttributionOutput, InvalidArgumentError
from genattrib.output import Provenance
from genattrib.output.scores import SparseScores, tensors_equal

pytestmark = pytest.mark.numeric  # floats through other shapes: nox -s tests-portable re-runs them

PROMPTS = ["The capital of France is", "Once upon a time"]
CONTINUATIONS = [" Paris. The capital of Italy", " there was a little model"]
OTHER = "A quick brown fox"


def _close(a, b) -> None:
    assert a.tokens == b.tokens and a.prompt_length == b.prompt_length
    assert a.step_start == b.step_start and a.num_steps == b.num_steps
    assert_same_sequence(a, b, floor=TINY_MODEL)


@settings(max_examples=8, deadline=None)
@given(
    method=st.sampled_from(["saliency", "occlusion"]),
    cuts=st.sets(st.integers(1, 5), max_size=4),
    start=st.integers(0, 1),
    order=st.randoms(use_true_random=False),
)
def test_windows_merge_into_the_single_call_over_their_union(tiny_llama, method, cuts, start, order):
    tok = tiny_llama.tokenizer
    forced = [tok(c, add_special_tokens=False)["input_ids"][:6] for c in CONTINUATIONS]
    forced = [torch.tensor(ids) for ids in forced]
    assert all(len(ids) == 6 for ids in forced)
    common = dict(method=method, step_scores=["probability"])
    full = tiny_llama.attribute(PROMPTS, forced, attr_pos_start=start, **common)
    edges = [start, *sorted(c for c in cuts if c > start), 6]
    windows = [
        tiny_llama.attribute(PROMPTS, forced, attr_pos_start=a, attr_pos_end=b, **common)
        for a, b in zip(edges, edges[1:])
    ]
    other = tiny_llama.attribute(OTHER, max_new_tokens=3, **common)
    parts = [*windows, other]
    order.shuffle(parts)
    merged = FeatureAttributionOutput.merge(parts)
    assert len(merged) == 3  # two stitched sequences and the other one
    stitched = [s for s in merged.sequences if s.tokens != other.sequences[0].tokens]
    for got, want in zip(stitched, full.sequences, strict=True):
        _close(got, want)
    first_window = min(i for i, part in enumerate(parts) if any(part is w for w in windows))
    where_other = next(i for i, part in enumerate(parts) if part is other)
    at = [i for i, s in enumerate(merged.sequences) if s is other.sequences[0]]
    assert at == [0 if where_other < first_window else 2]  # a stitched sequence sits where its first window was
    for w in windows:  # the inputs are left as they were
        assert w.sequences[0].num_steps == w.sequences[1].num_steps <= 6


def test_stitched_result_saves_and_reloads(tiny_llama, tmp_path):
    windows = [
        tiny_llama.attribute(PROMPTS[0], CONTINUATIONS[0], attr_pos_start=a, attr_pos_end=b)
        for a, b in ((0, 2), (2, None))
    ]
    merged = FeatureAttributionOutput.merge(windows)
    assert len(merged) == 1
    assert FeatureAttributionOutput.load(merged.save(tmp_path / "m.safetensors")).equals(merged)


def _out(*sequences, **provenance) -> FeatureAttributionOutput:
    prov = Provenance(model_name="tiny", method="saliency", attributed_fn="logprob", **provenance)
    return FeatureAttributionOutput(list(sequences), prov)


def _window(start: int, stop: int, **kwargs):
    """Steps ``start:stop`` of one fixed sequence (prompt 3, 6 generated)."""
    return small_sequence(generated=6, **kwargs).steps(start, stop)


def test_windows_of_a_fixed_sequence_join_exactly():
    whole = small_sequence(generated=6)
    merged = FeatureAttributionOutput.merge([_out(_window(3, 6)), _out(_window(0, 1)), _out(_window(1, 3))])
    assert len(merged) == 1 and merged.sequences[0].equals(whole)


def test_repeats_stay_separate_and_stitch_false_keeps_everything():
    a = _out(_window(0, 6))
    assert len(FeatureAttributionOutput.merge([a, a])) == 2  # the same prompt twice, e.g. in a dataset
    assert len(FeatureAttributionOutput.merge([_out(_window(0, 2)), _out(_window(2, 6))], stitch=False)) == 2


@pytest.mark.parametrize(
    "windows,words",
    [
        ([(0, 3), (2, 6)], ["overlapping", "0:3", "2:6"]),
        ([(0, 6), (1, 3)], ["overlapping", "0:6", "1:3"]),
        ([(0, 2), (4, 6)], ["unexplained", "2:4", "attr_pos_start=2, attr_pos_end=4"]),
        ([(0, 2), (0, 2), (2, 6)], ["overlapping"]),
    ],
)
def test_overlaps_and_gaps_are_refused(windows, words):
    with pytest.raises(InvalidArgumentError) as info:
        FeatureAttributionOutput.merge([_out(_window(a, b)) for a, b in windows])
    assert info.value.argument == "outputs"
    assert all(word in str(info.value) for word in words)


def test_windows_made_differently_are_refused():
    first, second = _window(0, 2), _window(2, 6)
    with pytest.raises(InvalidArgumentError, match="method_params"):
        FeatureAttributionOutput.merge([_out(first, method_params={"n": 1}), _out(second, method_params={"n": 2})])
    fewer = _window(2, 6)
    fewer.step_scores.pop("entropy")
    with pytest.raises(InvalidArgumentError, match="step scores"):
        FeatureAttributionOutput.merge([_out(first), _out(fewer)])
    with pytest.raises(InvalidArgumentError, match="stored differently"):
        FeatureAttributionOutput.merge([_out(first), _out(_window(2, 6, granular=False))])


def test_top_k_windows_stay_sparse():
    whole = small_sequence(generated=6, granular=False)
    parts = []
    for a, b in ((0, 2), (2, 6)):
        window = whole.steps(a, b)
        window.scores = SparseScores.from_dense(window.scores, k=2)
        parts.append(_out(window))
    merged = FeatureAttributionOutput.merge(parts).sequences[0]
    expected = SparseScores.from_dense(whole.scores, k=2)
    assert merged.sparse_scores is not None and merged.sparse_scores.equals(expected)
    assert tensors_equal(merged.scores, expected.dense())
