"""Batching never changes results: several prompts at once equal one at a time, and any
row-chunk size gives the same scores."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    torch.testing.assert_close(a.scores, b.scores, equal_nan=True, atol=1e-5, rtol=1e-4)
    assert a.step_scores.keys() == b.step_scores.keys()
    for k in a.step_scores:
        torch.testing.assert_close(a.step_scores[k], b.step_scores[k], equal_nan=True, atol=1e-5, rtol=1e-4)


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
    assert torch.equal(a.sequences[0].scores.nan_to_num(0), b.sequences[0].scores.nan_to_num(0))
    assert not torch.allclose(a.sequences[0].scores.nan_to_num(0), c.sequences[0].scores.nan_to_num(0))
    assert a.provenance.seed == 3
