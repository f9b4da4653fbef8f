"""Integrated gradients: scores add up to F(x) - F(baseline) (completeness)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiny import make_model
from tolerance import TINY_MODEL, assert_close_to_scale

pytestmark = pytest.mark.numeric  # floats through other shapes: nox -s tests-portable re-runs them

WORDS = ["The", " capital", " of", " France", " is", " quick", " fox", " time", " model", " 42", " dog"]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    words=st.lists(st.sampled_from(WORDS), min_size=2, max_size=6),
    model_seed=st.integers(0, 3),
    kind=st.sampled_from(["llama", "gpt2", "qwen2"]),
    # "pad" is excluded on purpose: HF initialises the padding embedding to zeros, and a zero
    # baseline is degenerate for RMSNorm models (see docs/concepts.md)
    baseline=st.sampled_from(["unk", "eos", " the"]),
    fn=st.sampled_from(["logprob", "probability", "logit"]),
)
def test_ig_completeness(tiny_tokenizer, words, model_seed, kind, baseline, fn):
    import genattrib

    am = genattrib.load_model((make_model(kind, tiny_tokenizer, seed=model_seed), tiny_tokenizer))
    prompt = "".join(words)
    out = am.attribute(
        prompt, target=" is Paris", method="integrated_gradients", n_steps=64, baseline=baseline, attributed_fn=fn
    )
    seq = out.sequences[0]
    err = seq.step_scores["completeness_error"]
    # F(x) - F(x') recovered from the sum of scores and the reported error
    delta = seq.scores.nan_to_num(0).sum(-1) - err
    assert delta.abs().max() > 1e-6, "degenerate baseline: F(x) == F(baseline)"
    assert (err.abs() <= 1e-3 * delta.abs().clamp(min=1e-3) + 1e-5).all(), (err, delta)


def test_completeness_error_is_honest(tiny_llama):
    """With one step, the error is large: the step score really measures the quadrature error."""
    coarse = tiny_llama.attribute(
        "The capital of France is", target=" Paris", method="integrated_gradients", n_steps=1, quadrature="riemann_left"
    )
    fine = tiny_llama.attribute("The capital of France is", target=" Paris", method="integrated_gradients", n_steps=64)
    assert (
        coarse.sequences[0].step_scores["completeness_error"].abs().max()
        > 10 * fine.sequences[0].step_scores["completeness_error"].abs().max()
    )
    # F(x) - F(x') is the same whatever the quadrature
    d1 = coarse.sequences[0].scores.nan_to_num(0).sum(-1) - coarse.sequences[0].step_scores["completeness_error"]
    d2 = fine.sequences[0].scores.nan_to_num(0).sum(-1) - fine.sequences[0].step_scores["completeness_error"]
    assert_close_to_scale(d1, d2, floor=TINY_MODEL)
