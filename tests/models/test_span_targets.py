"""Span targets: ``attribute(..., explain=...)`` explains units of the generated text.

A unit row explains the combined value of its tokens (the sum of their log-probs for
``logprob``) from the positions before the unit, its own tokens held as they are.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tolerance import OPS, TINY_MODEL, assert_close_to_scale, tiny_floor

from genattrib import FeatureAttributionOutput
from genattrib.engine import ModelForward, SequenceJob, run_attribution
from genattrib.errors import InvalidArgumentError
from genattrib.methods import get_method
from genattrib.models.options.explain_units import CharSpans, unit_spans
from genattrib.targets import resolve_target

pytestmark = pytest.mark.numeric  # floats through other shapes: nox -s tests-portable re-runs them

PROMPT = "The capital of France is"
STORY = " The cat sleeps. A fox jumps over the dog.\n\nOnce upon a time."


def _forced_ids(model, text: str = STORY) -> list[int]:
    return model.tokenizer(text, add_special_tokens=False)["input_ids"]


def _partition(n: int, cuts: list[int]) -> list[tuple[int, int]]:
    edges = sorted({0, n, *[c % n for c in cuts]})
    return list(zip(edges, edges[1:]))


# --- units of the generated text ------------------------------------------------------------------
def test_named_units_follow_the_text():
    tokens = ["Q", "?", " A", " cat", ".", " It", " ran", ".\n\n", "Then", " more", "\n", "end"]
    assert unit_spans("tokens", tokens, 2) is None
    assert unit_spans("sentences", tokens, 2) == [(2, 5), (5, 8), (8, 12)]
    assert unit_spans("paragraphs", tokens, 2) == [(2, 8), (8, 12)]
    assert unit_spans("lines", tokens, 2) == [(2, 8), (8, 11), (11, 12)]
    assert unit_spans("words", tokens, 2)[:3] == [(2, 3), (3, 4), (4, 5)]
    # generated steps 1..4 keep only the parts of units inside them
    assert unit_spans("sentences", tokens, 2, steps=range(1, 4)) == [(3, 5), (5, 6)]


def test_explicit_spans_token_and_character():
    tokens = ["P", " one", " two", " three", " four"]
    assert unit_spans([(0, 2), (3, 4)], tokens, 1) == [(1, 3), (4, 5)]
    # " one two three four": characters 0..8 cover " one two", 9..14 " three"
    assert unit_spans(CharSpans([(0, 8), (9, 14)]), tokens, 1) == [(1, 3), (3, 4)]
    with pytest.raises(InvalidArgumentError, match="explain"):
        unit_spans([(0, 9)], tokens, 1)
    with pytest.raises(InvalidArgumentError, match="overlap"):
        unit_spans([(0, 2), (1, 3)], tokens, 1)
    with pytest.raises(InvalidArgumentError, match="explain"):
        unit_spans("chapters", tokens, 1)


# --- the result -------------------------------------------------------------------------------------
def test_sentence_rows_hold_units_text_and_nan_from_their_first_token(tiny_llama):
    out = tiny_llama.attribute(PROMPT, STORY, method="saliency", explain="sentences", step_scores=["logprob"])
    seq = out.sequences[0]
    assert out.provenance.explain == "sentences"
    assert seq.is_unit_level and len(seq.target_spans) == seq.scores.shape[0] == 3
    assert seq.target_tokens == [" The cat sleeps.", " A fox jumps over the dog.\n\n", "Once upon a time."]
    for j, (start, _stop) in enumerate(seq.target_spans):
        assert seq.scores[j, start:].isnan().all()
        assert not seq.scores[j, :start].isnan().any()
    # the unit's logprob step score is the sum of its tokens' log-probs
    tokens = tiny_llama.attribute(PROMPT, STORY, method="saliency", step_scores=["logprob"]).sequences[0]
    first = tokens.prompt_length
    expected = [float(tokens.step_scores["logprob"][a - first : b - first].sum()) for a, b in seq.target_spans]
    assert_close_to_scale(seq.step_scores["logprob"], expected, floor=TINY_MODEL, what="unit log-probs")


def test_probability_step_score_multiplies_over_a_unit(tiny_llama):
    out = tiny_llama.attribute(
        PROMPT, STORY, method="saliency", explain="sentences", step_scores=["probability", "logprob"]
    )
    steps = out.sequences[0].step_scores
    assert torch.allclose(steps["probability"], steps["logprob"].exp(), rtol=1e-4)
    assert out.provenance.step_score_rules["probability"] == "product"


def test_unit_results_save_load_slice_and_aggregate(tiny_llama, tmp_path):
    out = tiny_llama.attribute(PROMPT, STORY, method="input_x_gradient", explain="sentences")
    for name in ("r.json", "r.safetensors"):
        again = FeatureAttributionOutput.load(out.save(tmp_path / name))
        assert again.equals(out) and again.sequences[0].target_spans == out.sequences[0].target_spans
    tail = out.steps(1).sequences[0]
    assert tail.target_spans == out.sequences[0].target_spans[1:]
    assert torch.equal(tail.scores.nan_to_num(7), out.sequences[0].scores[1:].nan_to_num(7))  # a slice: exact
    words = out.aggregate("words").sequences[0]
    assert len(words.target_spans) == 3 and words.target_tokens[0] == " The cat sleeps."
    # source columns summed by word keep each row's total
    assert_close_to_scale(words.scores.nansum(-1), out.sequences[0].scores.nansum(-1), floor=OPS, what="row totals")


# --- linearity: a unit's attribution is the sum of its tokens' -----------------------------------
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(0, 100), min_size=0, max_size=4))
def test_span_gradient_is_the_sum_of_token_gradients(tiny_llama, cuts):
    ids = _forced_ids(tiny_llama)
    spans = _partition(len(ids), cuts)
    kwargs = dict(method="saliency", keep_granular=True)
    tokens = tiny_llama.attribute(PROMPT, torch.tensor(ids), **kwargs).sequences[0]
    units = tiny_llama.attribute(PROMPT, torch.tensor(ids), explain=spans, **kwargs).sequences[0]
    first = tokens.prompt_length
    for j, (a, b) in enumerate(units.target_spans):
        summed = tokens.granular_scores[a - first : b - first, :a].sum(0)
        assert_close_to_scale(units.granular_scores[j, :a], summed, floor=TINY_MODEL, what=f"unit {j}")


def test_span_integrated_gradients_is_the_sum_of_token_integrated_gradients(tiny_llama):
    """Per-token IG with the same sources (the unit's earlier tokens held, marked special) adds
    up to the unit's IG: IG is linear in F and each token's F ignores positions after it."""
    forward = ModelForward(tiny_llama.model)
    prompt = tiny_llama.tokenizer(PROMPT)["input_ids"]
    ids = torch.tensor(prompt + _forced_ids(tiny_llama))
    p = len(prompt)
    start, stop = p + 2, p + 7
    ig = get_method("integrated_gradients", n_steps=16)
    fn = resolve_target("logprob")
    unit = SequenceJob(ids, p, 2, 7, units=[(start, stop)])
    [unit_result] = run_attribution(forward, ig, fn, [unit], show_progress=False)
    total = torch.zeros(start)
    for t in range(start, stop):
        held = torch.zeros(ids.shape[0], dtype=torch.bool)
        held[start:t] = True
        job = SequenceJob(ids, p, t - p, t - p + 1, held_fixed=held)
        [res] = run_attribution(forward, ig, fn, [job], show_progress=False)
        total += res.scores[0, :start]
    assert_close_to_scale(unit_result.scores[0, :start], total, floor=TINY_MODEL, what="unit IG vs summed token IG")


def test_integrated_gradients_completeness_holds_per_unit(tiny_llama):
    out = tiny_llama.attribute(
        PROMPT, STORY, method="integrated_gradients", n_steps=64, explain="sentences", step_scores=["logprob"]
    )
    seq = out.sequences[0]
    for j, (start, _) in enumerate(seq.target_spans):
        attributed = float(seq.scores[j, :start].sum())
        change = float(seq.step_scores["logprob"][j] - seq.step_scores["baseline_value"][j])
        assert attributed == pytest.approx(change, abs=2e-3 * max(1.0, abs(change)))
        assert abs(float(seq.step_scores["completeness_error"][j])) < 2e-3 * max(1.0, abs(change))


# --- engine invariants --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "method", ["saliency", "integrated_gradients", "occlusion", "sequential_integrated_gradients", "lime"]
)
def test_batched_unit_rows_equal_one_at_a_time(tiny_llama, method):
    prompts = [PROMPT, "Once upon a time there was"]
    stories = [STORY, " a fox. It ran away. The end."]
    kwargs = dict(method=method, explain="sentences")
    if "integrated" in method:
        kwargs["n_steps"] = 4
    together = tiny_llama.attribute(prompts, stories, **kwargs)
    for i, (prompt, story) in enumerate(zip(prompts, stories)):
        alone = tiny_llama.attribute(prompt, story, max_rows=1, **kwargs).sequences[0]
        both = together.sequences[i]
        assert both.target_spans == alone.target_spans
        assert_close_to_scale(both.scores, alone.scores, floor=tiny_floor(method), what=f"prompt {i} together vs alone")


def test_gradient_methods_run_one_backward_per_unit(tiny_llama):
    tokens = tiny_llama.attribute(PROMPT, STORY, method="saliency")
    units = tiny_llama.attribute(PROMPT, STORY, method="saliency", explain="sentences")
    assert tokens.provenance.work["backward_rows"] == tokens.sequences[0].num_steps
    assert units.provenance.work["backward_rows"] == 3
    # the targets share forward rows: fewer forward passes than backward passes
    assert units.provenance.work["grad_rows"] <= 3
    assert tokens.provenance.work["grad_rows"] < tokens.sequences[0].num_steps


def test_occlusion_shares_rows_across_units(tiny_llama):
    """Occlusion reads every target of a sequence from one occluded copy: unit targets cost the
    same rows as token targets (one per source position, plus the unoccluded copy)."""
    tokens = tiny_llama.attribute(PROMPT, STORY, method="occlusion")
    units = tiny_llama.attribute(PROMPT, STORY, method="occlusion", explain="sentences")
    assert units.provenance.work["rows"] == tokens.provenance.work["rows"]
    seq = units.sequences[0]
    # the occlusion score of a unit is the sum of its tokens' (occlusion is linear in F); F of a
    # unit is a sum of ~15 log-probs near -5, so float32 differences of it are good to ~1e-5
    tok = tokens.sequences[0]
    first = tok.prompt_length
    for j, (a, b) in enumerate(seq.target_spans):
        assert torch.allclose(seq.scores[j, :a], tok.scores[a - first : b - first, :a].sum(0), atol=1e-4)


# --- errors -------------------------------------------------------------------------------------------
def test_methods_that_explain_single_tokens_refuse_units(tiny_llama):
    with pytest.raises(InvalidArgumentError, match="explain") as error:
        tiny_llama.attribute(PROMPT, STORY, method="reagent", explain="sentences")
    assert "saliency" in str(error.value)


def test_targets_that_do_not_combine_refuse_units(tiny_llama):
    tiny_llama.register_target("top_logit", lambda ctx: ctx.logits.amax(-1), merge="none")
    with pytest.raises(InvalidArgumentError, match="merge rule"):
        tiny_llama.attribute(PROMPT, STORY, attributed_fn="top_logit", explain="sentences")


def test_bad_explain_is_refused_before_work(tiny_llama):
    with pytest.raises(InvalidArgumentError, match="explain"):
        tiny_llama.attribute(PROMPT, STORY, explain="chapters")
    with pytest.raises(InvalidArgumentError, match="explain"):
        tiny_llama.attribute(PROMPT, STORY, explain=[(3, 1)])


@pytest.mark.parametrize("method", ["saliency", "occlusion"])
def test_logits_in_slices_give_the_same_scores(tiny_llama, monkeypatch, method):
    """A long unit's logits go through the LM head in slices (checkpointed under autograd):
    slicing to one slot at a time changes nothing."""
    whole = tiny_llama.attribute(PROMPT, STORY, method=method, explain="sentences")
    monkeypatch.setattr("genattrib.engine.forward.LOGIT_SLICE_BYTES", 1)
    sliced = tiny_llama.attribute(PROMPT, STORY, method=method, explain="sentences")
    a, b = whole.sequences[0].scores, sliced.sequences[0].scores
    # other LM-head shapes: occlusion's F of a unit (~ -58) may move by a float32 ulp (3.8e-6 on an AVX-512 EPYC)
    assert_close_to_scale(b, a, floor=tiny_floor(method), what=f"{method}, logits in slices vs whole")
