"""Targets that share forward rows (engine/shared_forward.py) equal the per-row path, to 1e-5 in fp32."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tolerance import TINY_MODEL, assert_close_to_scale, assert_same_sequence

from genattrib.engine import shared_forward
from genattrib.engine.cost_model import CostModel
from genattrib.engine.explained import Explained
from genattrib.engine.forward import ModelForward
from genattrib.engine.shared_forward import group_cost, shared_groups, shared_input_gradients
from genattrib.targets import resolve_target

pytestmark = pytest.mark.numeric  # floats through other shapes: nox -s tests-portable re-runs them

PROMPT = "The capital of France is"
TEXT = " Paris. The capital of Italy is Rome. It is"
FAST = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _ids(model, length: int) -> torch.Tensor:
    ids = model.tokenizer(PROMPT + TEXT, return_tensors="pt").input_ids[0]
    return ids.repeat(length // ids.shape[0] + 1)[:length]


def _per_row(forward, embeds, targets, fn, weights):
    """The per-row path: one model row per (target, point), cut to the target's prefix."""
    k = int(targets.positions.shape[0])
    out = torch.zeros(k, *embeds.shape[1:])
    values = torch.zeros(embeds.shape[0], k)
    for j in range(k):
        length = int(targets.positions[j][targets.mask[j]].max())
        one = targets.select(torch.tensor([j])).repeat_interleave(embeds.shape[0])
        v, g = forward.values_and_grads(embeds[:, :length].contiguous(), one, fn)
        out[j, :length] = (g * weights.view(-1, 1, 1)).sum(0)
        values[:, j] = v
    return values, out


@FAST
@given(length=st.integers(4, 14), k=st.integers(1, 5), points=st.integers(1, 3), data=st.data())
def test_shared_gradients_equal_per_row(tiny_model, length, k, points, data):
    forward = ModelForward(tiny_model.model)
    ids = _ids(tiny_model, length)
    positions = torch.tensor(sorted(data.draw(st.sets(st.integers(1, length - 1), min_size=1, max_size=k))))
    targets = Explained.tokens(positions, ids[positions])
    base = forward.embed(ids[None])
    embeds = base * torch.linspace(0.3, 1.0, points).view(-1, 1, 1)  # distinct points, as on an IG path
    weights = torch.rand(points, generator=torch.Generator().manual_seed(length)) + 0.5
    fn = resolve_target("logprob")
    values, grads = shared_input_gradients(forward, embeds, weights, targets, fn)
    ref_values, ref_grads = _per_row(forward, embeds, targets, fn, weights)
    assert_close_to_scale(values, ref_values, floor=TINY_MODEL)
    assert_close_to_scale(grads, ref_grads, floor=TINY_MODEL)


def test_shared_gradients_of_units_and_contrast_equal_per_row(tiny_llama):
    forward = ModelForward(tiny_llama.model)
    ids = _ids(tiny_llama, 16)
    units = Explained(
        torch.tensor([[6, 7, 8], [9, 10, 10], [12, 13, 14]]),
        ids[torch.tensor([[6, 7, 8], [9, 10, 10], [12, 13, 14]])],
        torch.tensor([[True, True, True], [True, True, False], [True, True, True]]),
        torch.full((3, 3), 11),
    )
    for name in ("logprob", "contrast_logprob_diff"):
        fn = resolve_target(name)
        values, grads = shared_input_gradients(forward, forward.embed(ids[None]), torch.ones(1), units, fn)
        ref_values, ref_grads = _per_row(forward, forward.embed(ids[None]), units, fn, torch.ones(1))
        assert_close_to_scale(values, ref_values, floor=TINY_MODEL)
        assert_close_to_scale(grads, ref_grads, floor=TINY_MODEL)


@pytest.mark.parametrize(
    "method,params",
    [
        ("saliency", {}),
        ("input_x_gradient", {}),
        ("integrated_gradients", {"n_steps": 3}),
        ("gradient_shap", {"n_samples": 3, "stdevs": 0.1}),
    ],
)
def test_methods_give_the_same_scores_whatever_the_grouping(tiny_model, monkeypatch, method, params):
    """One group per sequence, the cost model's groups, and one target per group (the per-row
    path) give the same scores and step scores."""
    results = []
    real = shared_forward.shared_groups
    for plan in (
        lambda lengths, *a, **k: [sorted(range(len(lengths)), key=lambda i: lengths[i])],
        real,
        lambda lengths, *a, **k: [[i] for i in sorted(range(len(lengths)), key=lambda i: lengths[i])],
    ):
        monkeypatch.setattr(shared_forward, "shared_groups", plan)
        results.append(tiny_model.attribute(PROMPT, TEXT, method=method, **params))
    first = results[0].sequences[0]
    for other in results[1:]:
        seq = other.sequences[0]
        assert_same_sequence(seq, first, floor=TINY_MODEL, what="other target groups")
    one_group, singles = results[0].provenance.work, results[2].provenance.work
    assert one_group["backward_rows"] == singles["backward_rows"]
    assert one_group["grad_rows"] < singles["grad_rows"]


def test_a_model_without_batching_rules_falls_back_to_one_target_per_pass(tiny_llama, monkeypatch):
    expected = tiny_llama.attribute(PROMPT, TEXT, method="saliency")
    original = torch.autograd.grad

    def no_vmap(outputs, inputs, grad_outputs=None, **kwargs):
        if kwargs.get("is_grads_batched"):
            raise RuntimeError("Batching rule not implemented for aten::some_op")
        return original(outputs, inputs, grad_outputs, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", no_vmap)
    got = tiny_llama.attribute(PROMPT, TEXT, method="saliency")
    assert_close_to_scale(got.sequences[0].scores, expected.sequences[0].scores, floor=TINY_MODEL, what="one per pass")


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 300), min_size=1, max_size=24),
    points=st.integers(1, 50),
    ratio=st.floats(0, 1e-2),
)
def test_shared_groups_partition_into_runs_at_the_least_cost(lengths, points, ratio):
    costs = CostModel(1.0, ratio, 0.0, call_overhead=4.0, seconds_per_token=1e-4)
    groups = shared_groups(lengths, points, costs)
    flat = [i for g in groups for i in g]
    assert sorted(flat) == list(range(len(lengths)))  # every target exactly once
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    assert flat == order  # contiguous runs of the sorted lengths

    def cost(gs):
        return sum(group_cost(max(lengths[i] for i in g), len(g), points, costs) for g in gs)

    assert cost(groups) <= cost([[i] for i in order]) + 1e-6  # never worse than the per-row path
    assert cost(groups) <= cost([order]) + 1e-6  # nor than one group
