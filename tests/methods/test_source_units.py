"""Source units (``sources=``): perturbation methods ablate whole units, one shared row per unit
(or sample) scoring every target; the context-ablation surrogate; a planted sentence is found."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reuse import kv_reuse
from tolerance import OPS, PERTURBATION, assert_close_to_scale

import genattrib
from genattrib import FeatureAttributionOutput
from genattrib.errors import InvalidArgumentError, UnsupportedModelError
from genattrib.methods.surrogates import fit_surrogates, r_squared
from genattrib.models.options.explain_units import CharSpans
from genattrib.models.options.sources import source_spans

pytestmark = pytest.mark.numeric  # floats through other shapes: nox -s tests-portable re-runs them

PROMPT = "Doc one. The cat sleeps.\n\nDoc two. A fox jumps.\n\nQuestion: who?"
ANSWER = " The fox. It jumps over the dog. The end."


# --- which positions form a unit ------------------------------------------------------------------
def test_named_source_units():
    tokens = ["A", ".", " B", ".", "\n\n", "C", ".", " Q", "?", " Ans", "."]
    assert source_spans("sentences", tokens, 9) == [(0, 2), (2, 5), (5, 7), (7, 9)]
    assert source_spans("paragraphs", tokens, 9) == [(0, 5), (5, 9)]
    assert source_spans("documents", tokens, 9) == [(0, 5), (5, 9)]
    assert source_spans("sentences", tokens, 9, include_generated=True)[-1] == (9, 11)
    roles = ["user"] * 2 + ["system"] * 7 + ["assistant"] * 2  # a message per document
    assert source_spans("documents", tokens, 9, token_roles=roles) == [(0, 2), (2, 5), (5, 9)]
    assert source_spans(CharSpans([(0, 5)]), tokens, 9) == [(0, 4)]  # "A. B." is tokens 0..3
    with pytest.raises(InvalidArgumentError, match="sources"):
        source_spans([(0, 10)], tokens, 9)
    assert source_spans([(0, 10)], tokens, 9, include_generated=True) == [(0, 10)]


# --- occlusion over units ---------------------------------------------------------------------------
def test_unit_occlusion_costs_one_row_per_unit_for_all_targets(tiny_llama):
    out = tiny_llama.attribute(PROMPT, ANSWER, method="occlusion", sources="sentences")
    seq = out.sequences[0]
    assert seq.num_steps > 5
    assert out.provenance.work["rows"] == len(seq.source_spans) + 1
    # a unit's score is shared evenly: summing the unit gives it back, and all its positions agree
    merged = out.aggregate("sources").sequences[0]
    assert len(merged.tokens) < len(seq.tokens)
    for j in range(seq.num_steps):
        for a, b in seq.source_spans:
            cells = seq.scores[j, a:b]
            assert_close_to_scale(cells, cells[:1].expand_as(cells), floor=OPS, what=f"unit {a}:{b}, row {j}")


def test_single_position_units_equal_token_occlusion(tiny_llama):
    tokens = tiny_llama.attribute(PROMPT, ANSWER, method="occlusion")
    n = len(tokens.sequences[0].tokens)
    one_each = [(i, i + 1) for i in range(n)]
    units = tiny_llama.attribute(PROMPT, ANSWER, method="occlusion", sources=one_each, sources_include_generated=True)
    a, b = tokens.sequences[0].scores, units.sequences[0].scores
    assert_close_to_scale(a, b, floor=PERTURBATION, what="one-token units vs token occlusion")  # rows built otherwise


def test_unit_targets_with_unit_sources_hold_their_own_tokens(tiny_llama):
    out = tiny_llama.attribute(
        PROMPT, ANSWER, method="occlusion", explain="sentences", sources="sentences", sources_include_generated=True
    )
    seq = out.sequences[0]
    starts = {a for a, _ in seq.source_spans}
    assert all(a in starts for a, _ in seq.target_spans)  # no ablated unit straddles a unit's start
    assert out.provenance.work["rows"] == len(seq.source_spans) + 1
    for j, (a, _) in enumerate(seq.target_spans):
        assert seq.scores[j, a:].isnan().all() and not seq.scores[j, :a].isnan().any()


# --- context ablation -----------------------------------------------------------------------------------
def test_context_ablation_is_seeded_and_batch_independent(tiny_llama):
    kwargs = dict(method="context_ablation", sources="sentences", n_samples=24)
    prompts, answers = [PROMPT, "Once upon a time. There was a fox."], [ANSWER, " It ran. Away."]
    together = tiny_llama.attribute(prompts, answers, seed=3, **kwargs)
    again = tiny_llama.attribute(prompts, answers, seed=3, **kwargs)
    other = tiny_llama.attribute(prompts, answers, seed=4, **kwargs)
    assert together.equals(again) or all(a.equals(b) for a, b in zip(together.sequences, again.sequences))
    assert not torch.equal(together.sequences[0].scores.nan_to_num(0), other.sequences[0].scores.nan_to_num(0))
    for i in range(2):
        alone = tiny_llama.attribute(prompts[i], answers[i], seed=3, max_rows=2, **kwargs).sequences[0]
        both = together.sequences[i]
        assert_close_to_scale(alone.scores, both.scores, floor=PERTURBATION, what=f"prompt {i} alone vs together")
    # samples + the full input, per sequence; fewer where samples rerun only their suffix over the
    # clean prefix's KV cache (a sample that drops nothing the targets read costs no row)
    assert together.provenance.work["rows"] <= 2 * (24 + 1)
    with kv_reuse("never"):
        assert tiny_llama.attribute(prompts, answers, seed=3, **kwargs).provenance.work["rows"] == 2 * (24 + 1)
    r2 = together.sequences[0].step_scores["surrogate_r2"]
    assert r2.shape == (together.sequences[0].num_steps,) and bool((r2 <= 1).all())


def test_context_ablation_runs_on_a_model_without_gradients(tiny_tokenizer):
    from tiny import make_model

    hf = make_model("llama", tiny_tokenizer, seed=1)
    hf.model.forward = torch.no_grad()(hf.model.forward)  # a logits-only model: autograd never sees inputs
    model = genattrib.load_model((hf, tiny_tokenizer))
    with pytest.raises(UnsupportedModelError):
        model.attribute(PROMPT, ANSWER, method="saliency")
    out = model.attribute(PROMPT, ANSWER, method="context_ablation", sources="sentences", n_samples=16)
    assert torch.isfinite(out.sequences[0].scores[:, : out.sequences[0].prompt_length]).all()


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 3))
def test_surrogates_recover_sparse_weights(seed, k):
    gen = torch.Generator().manual_seed(seed)
    z = (torch.rand(64, 6, generator=gen) < 0.5).double()
    w_true = torch.zeros(6, dtype=torch.float64)
    w_true[torch.randperm(6, generator=gen)[:k]] = torch.rand(k, generator=gen, dtype=torch.float64) * 4 + 1
    y = (z @ w_true + 0.5).unsqueeze(1)
    ridge, b = fit_surrogates(z, y, solver="ridge", alpha=0.0)
    assert torch.allclose(ridge[0], w_true, atol=1e-8) and abs(float(b[0]) - 0.5) < 1e-8
    lasso, _ = fit_surrogates(z, y, solver="lasso", alpha=1e-4, max_sources=k)
    assert set(lasso[0].nonzero().flatten().tolist()) == set(w_true.nonzero().flatten().tolist())
    assert torch.allclose(lasso[0], w_true, atol=0.01)
    assert float(r_squared(z @ lasso[0] + 0.5, y[:, 0])) > 0.999


# --- a model that reads one prompt sentence only ----------------------------------------------------
PLANTED_PROMPT = "The capital of France is Paris and"  # the planted positions 1 and 3 fall in unit 0
UNITS = [(0, 4), (4, 6), (6, 8)]


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("occlusion", {}),
        ("lime", {"n_samples": 64}),
        ("context_ablation", {"n_samples": 48}),
        ("saliency", {}),
        ("integrated_gradients", {"n_steps": 16}),
    ],
)
def test_every_unit_level_method_ranks_the_planted_unit_first(planted, method, params):
    model, positions = planted
    assert all(0 <= p < UNITS[0][1] for p in positions)
    out = model.attribute(PLANTED_PROMPT, max_new_tokens=4, method=method, sources=UNITS, explain="words", **params)
    merged = out.aggregate("sources").sequences[0]
    for row in merged.scores:
        prompt_units = row[: len(UNITS)].abs()
        assert int(prompt_units.argmax()) == 0, (method, row)


# --- errors and persistence --------------------------------------------------------------------------
def test_bad_sources_are_refused_before_work(tiny_llama):
    with pytest.raises(InvalidArgumentError, match="sources"):
        tiny_llama.attribute(PROMPT, ANSWER, sources="chapters")
    with pytest.raises(InvalidArgumentError, match="overlap"):
        tiny_llama.attribute(PROMPT, ANSWER, sources=[(0, 3), (2, 5)])
    out = tiny_llama.attribute(PROMPT, ANSWER, method="occlusion")
    with pytest.raises(InvalidArgumentError, match="source units"):
        out.aggregate("sources")


def test_source_spans_save_and_load(tiny_llama, tmp_path):
    out = tiny_llama.attribute(PROMPT, ANSWER, method="context_ablation", sources="documents", n_samples=16)
    again = FeatureAttributionOutput.load(out.save(tmp_path / "r.safetensors"))
    assert again.equals(out) and again.sequences[0].source_spans == out.sequences[0].source_spans
