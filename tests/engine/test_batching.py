"""Batching never changes results: several prompts at once equal one at a time, and any
row-chunk size gives the same scores."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tolerance import DEFAULT_MODEL, DEFAULT_MODEL_IG_LOGPROB, TINY_MODEL, assert_close_to_scale, assert_same_sequence

pytestmark = pytest.mark.numeric  # floats through other shapes: nox -s tests-portable re-runs them

PROMPTS = ["The capital of France is", "A quick brown fox", "Once upon a time there", "Numbers like 1, 2"]
TARGETS = [" Paris.", " jumps over the lazy dog", " was a model", " and 42"]
METHODS = [
    ("saliency", {}),
    ("integrated_gradients", {"n_steps": 4}),
    ("occlusion", {}),
    ("gradient_shap", {"n_samples": 3}),
    ("attention", {}),
]


def _close(a, b):
    assert a.tokens == b.tokens and a.prompt_length == b.prompt_length
    assert_same_sequence(a, b, floor=TINY_MODEL)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picks=st.lists(st.integers(0, len(PROMPTS) - 1), min_size=2, max_size=4), method=st.sampled_from(METHODS))
def test_batch_equals_one_at_a_time(tiny_llama, picks, method):
    name, params = method
    prompts, targets = [PROMPTS[i] for i in picks], [TARGETS[i] for i in picks]
    together = tiny_llama.attribute(prompts, target=targets, method=name, step_scores=["probability"], **params)
    for k, (p, t) in enumerate(zip(prompts, targets)):
        alone = tiny_llama.attribute(p, target=t, method=name, step_scores=["probability"], **params)
        _close(together.sequences[k], alone.sequences[0])


@pytest.mark.parametrize("method,params", METHODS)
def test_row_chunk_size_does_not_matter(tiny_llama, method, params):
    big = tiny_llama.attribute(PROMPTS[:2], target=TARGETS[:2], method=method, **params)
    small = tiny_llama.attribute(PROMPTS[:2], target=TARGETS[:2], method=method, max_rows=1, **params)
    for a, b in zip(big.sequences, small.sequences):
        _close(a, b)


def test_generation_batches_equal_single(tiny_llama):
    together = tiny_llama.attribute(PROMPTS, max_new_tokens=5, batch_size=2, step_scores=["probability"])
    for k, p in enumerate(PROMPTS):
        alone = tiny_llama.attribute(p, max_new_tokens=5, step_scores=["probability"])
        assert together.sequences[k].input_ids.tolist() == alone.sequences[0].input_ids.tolist()
        _close(together.sequences[k], alone.sequences[0])


def test_gradient_shap_is_seeded(tiny_llama):
    a = tiny_llama.attribute(PROMPTS[0], target=TARGETS[0], method="gradient_shap", n_samples=4, stdevs=0.1, seed=3)
    b = tiny_llama.attribute(PROMPTS[0], target=TARGETS[0], method="gradient_shap", n_samples=4, stdevs=0.1, seed=3)
    c = tiny_llama.attribute(PROMPTS[0], target=TARGETS[0], method="gradient_shap", n_samples=4, stdevs=0.1, seed=4)
    assert torch.equal(a.sequences[0].scores.nan_to_num(0), b.sequences[0].scores.nan_to_num(0))  # a repeat call
    assert not torch.allclose(a.sequences[0].scores.nan_to_num(0), c.sequences[0].scores.nan_to_num(0))
    assert a.provenance.seed == 3


def test_batch_size_groups_the_attribution_work(tiny_llama):
    """``batch_size`` plans attribution (not only generation) in groups of prompts: rows of
    different prompts share model calls only inside a group, and the scores do not change."""
    prompts, targets = [PROMPTS[0], PROMPTS[0]], [TARGETS[0], TARGETS[0]]  # equal lengths: rows may share calls
    method = {"method": "discretized_integrated_gradients", "n_anchors": 2}  # its batches mix sequences
    together = tiny_llama.attribute(prompts, target=targets, **method)
    grouped = tiny_llama.attribute(prompts, target=targets, batch_size=1, **method)
    assert grouped.provenance.work["model_calls"] > together.provenance.work["model_calls"]
    assert grouped.provenance.work["rows"] == together.provenance.work["rows"]
    for a, b in zip(together.sequences, grouped.sequences):
        _close(a, b)


DEFAULT_PROMPTS, DEFAULT_TARGETS = ["The capital of France is", "Water boils at"], [" Paris.", " 100 degrees"]


@pytest.mark.default_model
@pytest.mark.parametrize(
    "method,params,floor",
    [
        ("saliency", {}, DEFAULT_MODEL),  # max_rows=1: each target its own row, plain backward passes (9.6e-5)
        ("occlusion", {}, DEFAULT_MODEL),
        ("attention", {}, DEFAULT_MODEL),
        ("rollout", {}, DEFAULT_MODEL),
        # the log-prob path of IG amplifies the rounding of calls of another row count
        # (docs/architecture.md, "Chunking and results": 7e-3 measured at 16 steps)
        ("integrated_gradients", {"n_steps": 4}, DEFAULT_MODEL_IG_LOGPROB),
    ],
)
def test_default_model_chunking_changes_results_at_most_by_the_floor(default_model, method, params, floor):
    """On the default model: one row per model call against automatic sizing stays within the
    documented floor; the chunk plan is in the provenance; an identical call is bit-identical."""
    auto = default_model.attribute(DEFAULT_PROMPTS, target=DEFAULT_TARGETS, method=method, **params)
    again = default_model.attribute(DEFAULT_PROMPTS, target=DEFAULT_TARGETS, method=method, **params)
    one = default_model.attribute(DEFAULT_PROMPTS, target=DEFAULT_TARGETS, method=method, max_rows=1, **params)
    assert one.provenance.work["max_chunk_rows"] == 1
    assert one.provenance.work["model_calls"] == one.provenance.work["rows"] > 0
    assert auto.provenance.work["max_chunk_rows"] >= 1 and auto.provenance.work["oom_retries"] == 0
    for a, b, c in zip(auto.sequences, one.sequences, again.sequences):
        assert a.tokens == b.tokens
        assert_close_to_scale(b.scores, a.scores, floor=floor, rows=True, what=f"{method}, max_rows=1 vs automatic")
        assert torch.equal(a.scores.nan_to_num(0), c.scores.nan_to_num(0))  # a repeat call: the same chunks


@pytest.mark.default_model
@pytest.mark.parametrize("method,params", [("integrated_gradients", {"n_steps": 4}), ("occlusion", {})])
def test_default_model_prompts_together_equal_one_at_a_time(default_model, method, params):
    """With the same ``max_rows``, prompts attributed together give each prompt's scores alone to
    the default model's floor relative to each row's largest score (fp32), step scores included."""
    together = default_model.attribute(
        DEFAULT_PROMPTS, target=DEFAULT_TARGETS, method=method, max_rows=4, step_scores=["probability"], **params
    )
    for k, (p, t) in enumerate(zip(DEFAULT_PROMPTS, DEFAULT_TARGETS)):
        alone = default_model.attribute(p, target=t, method=method, max_rows=4, step_scores=["probability"], **params)
        a, b = together.sequences[k], alone.sequences[0]
        assert_close_to_scale(a.scores, b.scores, floor=DEFAULT_MODEL, rows=True, what=f"prompt {k} together vs alone")
        assert_close_to_scale(a.step_scores["probability"], b.step_scores["probability"], floor=DEFAULT_MODEL)
