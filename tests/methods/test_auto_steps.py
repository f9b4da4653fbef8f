"""n_steps="auto" for integrated gradients and SIG: doubling until the quadrature error is within
the tolerance, each row with its own count, the cap reported."""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tolerance import TINY_MODEL, assert_close_to_scale

import genattrib
from genattrib import InvalidArgumentError
from genattrib.errors import GenattribWarning
from genattrib.methods.auto_steps import START_STEPS, converged, step_sequence

pytestmark = pytest.mark.numeric  # floats through other shapes: nox -s tests-portable re-runs them

PROMPTS = ["The capital of France is", "A quick brown fox"]
IG, SIG = "integrated_gradients", "sequential_integrated_gradients"
# Riemann-left sums converge as 1/n on the tiny model (Gauss-Legendre is exact at 16 points there),
# so rows need different numbers of doublings
RULE = {"quadrature": "riemann_left", "max_new_tokens": 3}


def _shares(seq, method):
    """Each row's error as a share of what the tolerance multiplies (see auto_steps.row_converged)."""
    scores = seq.scores.nan_to_num()
    if method == SIG:
        return seq.step_scores["max_position_error"] / scores.abs().amax(-1)
    error = seq.step_scores["completeness_error"]
    return error.abs() / (scores.sum(-1) - error).abs()


@pytest.mark.parametrize("method", [IG, SIG])
def test_auto_doubles_each_row_until_it_meets_the_tolerance(tiny_llama, method):
    tolerance = 0.05
    auto = tiny_llama.attribute(PROMPTS, method=method, n_steps="auto", tolerance=tolerance, **RULE)
    assert auto.provenance.method_params["n_steps"] == "auto"
    fixed = {}
    counts = set()
    for i, seq in enumerate(auto.sequences):
        used = seq.step_scores["n_steps_used"]
        assert (_shares(seq, method) <= tolerance).all()
        for j, n in enumerate(used.int().tolist()):
            counts.add(n)
            assert n in step_sequence(512)
            if n not in fixed:
                fixed[n] = tiny_llama.attribute(PROMPTS, method=method, n_steps=n, **RULE)
            same = fixed[n].sequences[i]
            # the row's scores are those of a fixed run with its count ...
            assert_close_to_scale(seq.scores[j], same.scores[j], floor=TINY_MODEL, what=f"row {j} vs n_steps={n}")
            # completeness_error = Σ scores − Δf: its rounding scales with Σ|scores|, not with its own size
            total = float(same.scores[j].nan_to_num().abs().sum() + same.step_scores["baseline_value"][j].abs())
            for name in ("completeness_error", "baseline_value"):
                got, want = seq.step_scores[name][j], same.step_scores[name][j]
                assert_close_to_scale(got, want, floor=TINY_MODEL, what=name, scale=total)
            if n > START_STEPS:  # ... and half the count was not enough
                if n // 2 not in fixed:
                    fixed[n // 2] = tiny_llama.attribute(PROMPTS, method=method, n_steps=n // 2, **RULE)
                assert _shares(fixed[n // 2].sequences[i], method)[j] > tolerance
    assert len(counts) >= 2  # rows really stopped at different counts


@pytest.mark.parametrize("method", [IG, SIG])
def test_auto_stops_at_the_cap_and_says_so(tiny_llama, method):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = tiny_llama.attribute(PROMPTS, method=method, n_steps="auto", tolerance=1e-4, max_steps=48, **RULE)
    used = torch.cat([s.step_scores["n_steps_used"] for s in out.sequences])
    shares = torch.cat([_shares(s, method) for s in out.sequences])
    assert used.max() == 48 and (used[shares > 1e-4] == 48).all()
    messages = [str(w.message) for w in caught if issubclass(w.category, GenattribWarning)]
    assert any("max_steps=48" in m and "n_steps_used" in m for m in messages), messages


def test_auto_rows_do_not_depend_on_their_batch(tiny_llama):
    together = tiny_llama.attribute(PROMPTS, method=IG, n_steps="auto", tolerance=0.05, **RULE)
    for i, prompt in enumerate(PROMPTS):
        alone = tiny_llama.attribute(prompt, method=IG, n_steps="auto", tolerance=0.05, **RULE).sequences[0]
        seq = together.sequences[i]
        assert torch.equal(seq.step_scores["n_steps_used"], alone.step_scores["n_steps_used"])
        assert_close_to_scale(seq.scores, alone.scores, floor=TINY_MODEL, what=f"prompt {i} together vs alone")


def test_gauss_legendre_auto_converges_at_once_on_a_smooth_model(tiny_llama):
    out = tiny_llama.attribute(PROMPTS[0], method=IG, n_steps="auto", max_new_tokens=2)
    seq = out.sequences[0]
    assert (seq.step_scores["n_steps_used"] == START_STEPS).all()
    assert (_shares(seq, IG) <= 0.1).all()


@pytest.mark.parametrize(
    "params,argument",
    [
        ({"n_steps": "fast"}, "n_steps"),
        ({"n_steps": 0}, "n_steps"),
        ({"n_steps": "auto", "tolerance": 0.0}, "tolerance"),
        ({"n_steps": "auto", "tolerance": -0.1}, "tolerance"),
        ({"n_steps": "auto", "tolerance": float("nan")}, "tolerance"),
        ({"n_steps": "auto", "max_steps": 0}, "max_steps"),
        # wrong types ("0.1", 2.5) are TypeCheckErrors under GENATTRIB_TYPECHECK: tests/models/test_errors.py
    ],
)
@pytest.mark.parametrize("method", [IG, SIG])
def test_bad_auto_arguments_fail_before_generation(tiny_llama, monkeypatch, method, params, argument):
    def no_generation(*args, **kwargs):
        raise AssertionError("generation started")

    monkeypatch.setattr(tiny_llama.model, "generate", no_generation)
    with pytest.raises(InvalidArgumentError) as info:
        tiny_llama.attribute(PROMPTS[0], method=method, max_new_tokens=2, **params)
    assert info.value.argument == argument
    with pytest.raises(InvalidArgumentError):
        genattrib.methods.get_method(method, **params)


@given(st.integers(1, 5000))
def test_step_sequence_doubles_up_to_the_cap(cap):
    counts = step_sequence(cap)
    assert counts[0] == min(START_STEPS, cap) and counts[-1] == cap
    assert all(b > a and b <= 2 * a for a, b in zip(counts, counts[1:]))
    assert all(b == 2 * a for a, b in zip(counts, counts[1:-1]))


@settings(max_examples=200)
@given(
    st.floats(-1e3, 1e3, allow_nan=False),
    st.floats(-1e3, 1e3, allow_nan=False),
    st.floats(1e-3, 1.0),
)
def test_converged_is_the_relative_rule(error, delta, tolerance):
    got = bool(converged(torch.tensor([error]), torch.tensor([delta]), tolerance))
    assert got == (abs(error) <= tolerance * abs(delta) + 1e-6) or abs(abs(error) - tolerance * abs(delta)) < 1e-3
    assert not bool(converged(torch.tensor([float("nan")]), torch.tensor([delta]), tolerance))
