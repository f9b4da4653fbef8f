"""Forward-mode SIG (engine/forward_mode.py): one dual pass per (position, step) copy gives every
target's derivative; it equals the reverse-mode path to 1e-5 in fp32, with and without the KV
cache, and falls back to reverse mode where forward mode is missing."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reuse import kv_reuse
from tolerance import OPS, TINY_MODEL, assert_close_to_scale, assert_same_sequence
from torch.autograd import forward_ad
from torch.overrides import _get_current_function_mode_stack

import genattrib
from genattrib.engine import forward_mode
from genattrib.engine.explained import Explained
from genattrib.engine.forward import ModelForward
from genattrib.targets import resolve_target

pytestmark = pytest.mark.numeric  # floats through other shapes: nox -s tests-portable re-runs them

SIG = {"method": "sequential_integrated_gradients", "n_steps": 3}
PROMPTS, TEXTS = ["The capital of France is", "A quick brown fox"], [" Paris. The", " jumps"]
FAST = settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _same_scores(a, b):
    """Forward against reverse mode (or another KV reuse): other operations, so the tiny models' floor."""
    for x, y in zip(a.sequences, b.sequences, strict=True):
        assert_same_sequence(x, y, floor=TINY_MODEL)


@pytest.mark.parametrize("reuse", ["never", "always"])
@pytest.mark.parametrize("fn", ["logprob", "contrast_logprob_diff"])
def test_forward_mode_sig_equals_reverse_mode(tiny_model, reuse, fn):
    extra = {} if fn == "logprob" else {"attributed_fn": fn, "contrast_target": [" Rome. A", " runs"]}
    with kv_reuse(reuse):
        fast = tiny_model.attribute(PROMPTS, TEXTS, **SIG, **extra)  # granular scores not kept: forward mode
        slow = tiny_model.attribute(PROMPTS, TEXTS, keep_granular=True, **SIG, **extra)
    assert fast.provenance.work["grad_rows"] == 0 and slow.provenance.work["grad_rows"] > 0
    assert all(s.granular_scores is None for s in fast.sequences)
    assert all(s.granular_scores is not None for s in slow.sequences)
    _same_scores(fast, slow)


def _reference_sums(forward, x, base, cols, alphas, weights, targets, fn):
    """Plain reverse mode: each (position, step) copy, each target's gradient at the moved position."""
    out = torch.zeros(len(cols), int(targets.positions.shape[0]))
    for c, i in enumerate(cols.tolist()):
        for a, w in zip(alphas.tolist(), weights.tolist(), strict=True):
            leaf = x.clone()
            leaf[i] = base[i] + a * (x[i] - base[i])
            leaf = leaf[None].requires_grad_(True)
            with torch.enable_grad():
                values = forward.unit_values(leaf, targets.map(lambda t: t[None]), fn)[0]
                for j in range(values.shape[0]):
                    (grad,) = torch.autograd.grad(values[j], leaf, retain_graph=True)
                    out[c, j] += w * float((grad[0, i] * (x[i] - base[i])).sum())
    return out


@FAST
@given(length=st.integers(3, 12), steps=st.integers(1, 3), data=st.data())
def test_moved_position_sums_equal_reverse_mode(tiny_llama, length, steps, data):
    forward = ModelForward(tiny_llama.model)
    ids = tiny_llama.tokenizer(PROMPTS[0] + TEXTS[0], return_tensors="pt").input_ids[0].repeat(3)[:length]
    x = forward.embed(ids[None])[0].detach()
    base = torch.zeros_like(x) + 0.1
    positions = torch.tensor(sorted(data.draw(st.sets(st.integers(1, length - 1), min_size=1, max_size=4))))
    cols = torch.tensor(sorted(data.draw(st.sets(st.integers(0, length - 1), min_size=1, max_size=length))))
    targets = Explained.tokens(positions, ids[positions])
    alphas, weights = torch.rand(steps) * 0.9 + 0.05, torch.rand(steps) + 0.5
    fn = resolve_target("logprob")
    for reuse in ("never", "always"):
        with kv_reuse(reuse):
            got = forward_mode.moved_position_sums(forward, x, base, cols, alphas, weights, targets, fn)
        expected = _reference_sums(forward, x, base, cols, alphas, weights, targets, fn)
        assert_close_to_scale(got, expected, floor=TINY_MODEL, what=f"moved-position sums, reuse={reuse}")


def test_a_model_without_forward_mode_keeps_the_reverse_path(tiny_llama, monkeypatch):
    expected = tiny_llama.attribute(PROMPTS[0], TEXTS[0], keep_granular=True, **SIG)

    def unsupported(*args, **kwargs):
        raise NotImplementedError("Trying to use forward AD with some_op that does not support it")

    monkeypatch.setattr(forward_mode.forward_ad, "make_dual", unsupported)
    fresh = genattrib.load_model((tiny_llama.model, tiny_llama.tokenizer))  # probes its model afresh
    got = fresh.attribute(PROMPTS[0], TEXTS[0], **SIG)
    assert got.provenance.work["grad_rows"] > 0  # the reverse path ran
    _same_scores(got, expected)


def test_the_forward_mode_scope_restores_the_model(tiny_llama):
    model = tiny_llama.model
    forward = ModelForward(model)
    before = model.config._attn_implementation
    modes = len(_get_current_function_mode_stack())
    with pytest.raises(RuntimeError, match="boom"), forward_mode.forward_mode(forward):
        assert model.config._attn_implementation != before  # plain-operation attention inside
        raise RuntimeError("boom")
    assert model.config._attn_implementation == before
    assert len(_get_current_function_mode_stack()) == modes
    with forward_ad.dual_level():  # no dual level was left open: a fresh one starts at level 0
        pass


def test_paired_linear_equals_the_generic_rule():
    layer = torch.nn.Linear(6, 5)
    x, t = torch.randn(2, 3, 6), torch.randn(2, 3, 6)
    with torch.no_grad(), forward_ad.dual_level():
        generic = forward_ad.unpack_dual(layer(forward_ad.make_dual(x, t)))
        with forward_mode._PairedLinear():
            paired = forward_ad.unpack_dual(layer(forward_ad.make_dual(x, t)))
    assert_close_to_scale(paired.primal, generic.primal, floor=OPS, what="primal")  # one stacked matmul vs two
    assert_close_to_scale(paired.tangent, generic.tangent, floor=OPS, what="tangent")


def test_estimate_plans_the_forward_mode_rows(tiny_llama):
    est = tiny_llama.estimate(PROMPTS[0], TEXTS[0], calibrate=False, **SIG)
    out = tiny_llama.attribute(PROMPTS[0], TEXTS[0], **SIG)
    assert est.grad_rows == out.provenance.work["grad_rows"] == 0
    with kv_reuse("never"):  # every copy runs once, so the rows match exactly
        out = tiny_llama.attribute(PROMPTS[0], TEXTS[0], **SIG)
    assert est.model_rows == out.provenance.work["rows"]
