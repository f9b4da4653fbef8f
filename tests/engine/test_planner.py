"""The planner (engine/planner.py): one partition DP, optimal against brute force on small inputs,
every item in exactly one group, caps respected; the cost model (engine/cost_model.py) built from
the config and measured once per model."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reuse import kv_reuse
from tolerance import assert_same_sequence, tiny_floor

from genattrib.engine import cost_model as cost_model_module
from genattrib.engine import planner, shared_forward
from genattrib.engine.cost_model import CostModel, config_flops, cost_model
from genattrib.engine.execute import _build_batch
from genattrib.engine.forward import ModelForward
from genattrib.engine.planner import plan_groups
from genattrib.engine.row_refs import RowRef, SequenceJob, has_units, rows_of


def _runs(n: int):
    """Every split of ``range(n)`` into contiguous runs."""
    for cuts in itertools.product([False, True], repeat=max(0, n - 1)):
        runs, start = [], 0
        for i, cut in enumerate(cuts, start=1):
            if cut:
                runs.append(list(range(start, i)))
                start = i
        runs.append(list(range(start, n)))
        yield runs


SPANS = st.lists(st.tuples(st.integers(0, 20), st.integers(1, 12)), min_size=1, max_size=7)


@settings(max_examples=120, deadline=None)
@given(spans=SPANS, weight=st.integers(1, 4), cap=st.integers(1, 12), overhead=st.integers(0, 40))
def test_plan_is_optimal_covers_every_item_once_and_respects_the_cap(spans, weight, cap, overhead):
    first = [a for a, _ in spans]
    end = [a + n for a, n in spans]

    def cost(count, start, stop):
        return count * weight * (stop - start) + overhead

    groups, total = plan_groups(first, end, cost, lambda length: cap // weight)
    members = [i for g in groups for i in g.items]
    assert sorted(members) == list(range(len(spans)))  # every item exactly once
    for g in groups:
        assert g.start == min(first[i] for i in g.items) and g.end == max(end[i] for i in g.items)
        assert len(g.items) == 1 or len(g.items) <= max(1, cap // weight)  # the cap
    assert total == sum(cost(len(g.items), g.start, g.end) for g in groups)
    # optimal among the groupings into contiguous runs of the (end, first) order within the cap
    order = sorted(range(len(spans)), key=lambda i: (end[i], first[i]))
    best = min(
        sum(cost(len(r), min(first[order[i]] for i in r), max(end[order[i]] for i in r)) for r in runs)
        for runs in _runs(len(order))
        if all(len(r) == 1 or len(r) <= max(1, cap // weight) for r in runs)
    )
    assert total == best


@settings(max_examples=40, deadline=None)
@given(lengths=st.lists(st.integers(1, 50), min_size=1, max_size=7), overhead=st.floats(0, 100))
def test_a_larger_call_overhead_never_makes_more_groups(lengths, overhead):
    def count(o):
        groups, _ = plan_groups([0] * len(lengths), lengths, lambda n, s, e: n * (e - s) * 0.4 + (e - s) + o)
        return len(groups)

    assert count(overhead + 50.0) <= count(overhead)


def test_unit_rows_are_told_by_one_helper():
    token, unit = RowRef(0, 0, 5, 6), RowRef(0, 1, 6, 9)
    assert not token.is_unit and unit.is_unit
    assert has_units([token, unit]) and not has_units([token])


def test_reuse_switch_patches_only_the_threshold():
    assert planner.reuse_pays(80.0, 100.0) and not planner.reuse_pays(90.0, 100.0)
    with kv_reuse("never"):
        assert not planner.reuse_pays(0.0, 100.0)
    with kv_reuse("always"):
        assert planner.reuse_pays(1e9, 1.0)
    assert planner.WORTH_IT == 0.85


def test_cost_model_reads_the_config_and_measures_once_per_model(tiny_model, monkeypatch, tmp_path):
    monkeypatch.setenv("GENATTRIB_CACHE_DIR", str(tmp_path))  # nothing stored yet: it measures
    calls = []
    measure = cost_model_module._timed_call
    monkeypatch.setattr(cost_model_module, "_timed_call", lambda f, n: calls.append(n) or measure(f, n))
    first = cost_model(ModelForward(tiny_model.model))
    again = cost_model(ModelForward(tiny_model.model))  # a new call on the same model: no new measurement
    assert calls == [1, cost_model_module.PROBE_TOKENS] and again == first
    cfg = tiny_model.model.config.get_text_config()
    body, attention, head = config_flops(ModelForward(tiny_model.model))
    assert attention == pytest.approx(4.0 * cfg.num_hidden_layers * cfg.hidden_size)
    assert head == pytest.approx(2.0 * cfg.hidden_size * tiny_model.model.get_output_embeddings().weight.shape[0])
    assert body > 2.0 * cfg.num_hidden_layers * 2 * cfg.hidden_size**2  # Q and O projections at least
    assert 1.0 <= first.call_overhead <= cost_model_module.MAX_OVERHEAD
    assert first.call_overhead == 2 ** round(math.log2(first.call_overhead))  # a power of two


def test_the_measurement_is_stored_for_the_machine(tiny_tokenizer, monkeypatch, tmp_path):
    """Another process (here: another model object of the same shape, with nothing probed yet)
    reads the stored measurement instead of timing again, so it plans and scores the same way."""
    from tiny import make_model

    monkeypatch.setenv("GENATTRIB_CACHE_DIR", str(tmp_path))
    calls = []
    measure = cost_model_module._timed_call
    monkeypatch.setattr(cost_model_module, "_timed_call", lambda f, n: calls.append(n) or measure(f, n))
    first = cost_model(ModelForward(make_model("llama", tiny_tokenizer)))
    assert len(calls) == 2 and len(list((tmp_path / "cost_model").glob("*.json"))) == 1
    again = cost_model(ModelForward(make_model("llama", tiny_tokenizer, seed=1)))
    assert len(calls) == 2 and again == first  # read, not measured
    other = cost_model(ModelForward(make_model("gpt2", tiny_tokenizer)))  # another shape: its own measurement
    assert len(calls) == 4 and other.token_flops != first.token_flops


def test_row_cost_grows_with_attention():
    costs = CostModel(1.0, 0.01, 3.0, call_overhead=4.0, seconds_per_token=1e-3)
    assert costs.row(10) == pytest.approx(10 * (1 + 0.05))
    assert costs.row(10, heads=2) == pytest.approx(costs.row(10) + 6.0)
    assert costs.span(4, 10) == pytest.approx(costs.row(10) - costs.row(4))
    assert costs.seconds(1000.0) == pytest.approx(1.0)


def test_occlusion_scores_do_not_depend_on_the_targets_per_batch(tiny_llama, monkeypatch):
    """Occlusion batches up to ``sample_batch_targets`` sentence targets of a sequence on one set
    of occluded copies; two targets per batch (more batches, shorter rows) gives the same scores."""
    text = " The cat sat. The dog ran. A fox jumped. Rain fell."
    kwargs = {"method": "occlusion", "explain": "sentences", "sources": "sentences"}
    one_batch = tiny_llama.attribute("Doc one. The cat sleeps. Doc two.", text, **kwargs)
    monkeypatch.setattr(shared_forward, "MAX_SAMPLE_BATCH_TARGETS", 2)
    small = tiny_llama.attribute("Doc one. The cat sleeps. Doc two.", text, **kwargs)
    assert one_batch.provenance.work["rows"] < small.provenance.work["rows"]  # fewer copies run
    assert_same_sequence(small.sequences[0], one_batch.sequences[0], floor=tiny_floor("occlusion"), what="batches")


def test_a_batch_of_one_sequence_holds_its_embeddings_once(tiny_llama):
    forward = ModelForward(tiny_llama.model)
    job = SequenceJob(torch.arange(3, 12), prompt_length=4, step_start=0, step_stop=5)
    refs = rows_of([job])
    batch = _build_batch(refs, [job], forward, [torch.zeros(9, forward.hidden_size)], seed=0)
    assert batch.input_embeds.shape[0] == len(refs) and batch.input_embeds.stride(0) == 0  # views of one row
    assert batch.baseline_embeds.stride(0) == 0
    assert torch.equal(batch.input_embeds[0], forward.embed(job.input_ids[None, : refs[-1].length])[0])
