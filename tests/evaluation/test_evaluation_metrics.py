"""Faithfulness metrics: sanity on the planted-signal model, hand-computed Soft-NS/NC, edge cases."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from tolerance import TINY_MODEL, assert_close_to_scale

import genattrib
from genattrib.evaluation import collect_steps, evaluate
from genattrib.faithfulness.context import hellinger_distance
from genattrib.output import FeatureAttributionOutput

pytestmark = pytest.mark.numeric  # floats through other shapes: nox -s tests-portable re-runs them

PROMPTS = ["a b c d e f g h i j", "j i h g f e d c b a", "c a b d f e h g j i", "b b c c d d e e f f"]


def with_scores(out: FeatureAttributionOutput, make) -> FeatureAttributionOutput:
    """A copy of ``out`` whose rows are ``make(prefix_length)`` (NaN after the target kept)."""
    seqs = []
    for seq in out.sequences:
        scores = seq.scores.clone()
        for j, p in enumerate(seq.target_positions):
            scores[j, :p] = make(p)
        seqs.append(replace(seq, scores=scores, granular_scores=None))
    return FeatureAttributionOutput(seqs, out.provenance)


@pytest.fixture(scope="module")
def planted_runs(planted):
    model, positions = planted
    out = model.attribute(PROMPTS, max_new_tokens=3, method="occlusion")
    gen = torch.Generator().manual_seed(0)

    def on_planted(p: int) -> torch.Tensor:  # all mass on the planted pair
        s = torch.zeros(p)
        s[list(positions)] = 1.0
        return s

    def reversed_(p: int) -> torch.Tensor:  # planted pair ranked last
        return 1.0 - on_planted(p) + 0.01 * torch.arange(p, 0, -1) / p

    outs = {
        "planted": with_scores(out, on_planted),
        "random": with_scores(out, lambda p: torch.rand(p, generator=gen)),
        "reversed": with_scores(out, reversed_),
    }
    return {name: evaluate(o, metrics="all", model=model, seed=1) for name, o in outs.items()}


@pytest.mark.parametrize("metric", genattrib.list_metrics())
def test_planted_beats_random_and_reversed_is_worst(planted_runs, metric):
    lower = genattrib.evaluation.METRICS[metric].lower_is_better
    value = {name: res.summary[metric].value for name, res in planted_runs.items()}
    better = (lambda a, b: a < b) if lower else (lambda a, b: a > b)
    assert better(value["planted"], value["random"]), value
    assert better(value["planted"], value["reversed"]), value
    # Deleting tokens shifts the later ones to new positions, and the planted model reads fixed
    # positions: any deletion before position 3 disturbs it, so for the deletion-based metrics a
    # reversed ranking (which deletes position 0 first) is not worse than random, only than planted.
    if metric not in ("comprehensiveness", "aopc_comprehensiveness"):
        assert not better(value["reversed"], value["random"]), value


def test_soft_metrics_match_a_hand_computation(tiny_llama):
    """Binary keep-probabilities make the soft masks deterministic: compute Soft-NS/NC directly."""
    out = tiny_llama.attribute("a b c d e f", max_new_tokens=1, method="saliency")
    seq = out.sequences[0]
    p = seq.target_positions[0]
    keep = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 1.0][:p] + [0.0] * max(0, p - 6))
    scored = with_scores(out, lambda n: keep[:n])
    res = evaluate(scored, metrics=["soft_ns", "soft_nc"], model=tiny_llama, soft_normalization="clip")

    hf = tiny_llama.model
    emb = hf.get_input_embeddings()(seq.input_ids[:p]).detach()
    special = seq.held_fixed[:p].unsqueeze(-1)

    def dist(e: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            logits = hf(inputs_embeds=e.unsqueeze(0)).logits[0, -1]
        return torch.softmax(logits.float(), -1)

    q = dist(emb)

    def d(rho):
        return float(hellinger_distance(dist(emb * ((rho.unsqueeze(-1) > 0) | special)).unsqueeze(0), q.unsqueeze(0)))

    suff, comp, suff0 = 1 - d(keep), d(1 - keep), 1 - d(torch.zeros(p))
    expected_ns = max(0.0, suff - suff0) / (1 - suff0)
    expected_nc = comp / (1 - suff0)
    assert res.per_step["soft_ns"][0].item() == pytest.approx(expected_ns, abs=1e-5)
    assert res.per_step["soft_nc"][0].item() == pytest.approx(expected_nc, abs=1e-5)
    assert 0.0 <= expected_ns <= 1.0 and expected_nc >= 0.0


def test_soft_metrics_are_seeded(tiny_llama):
    out = tiny_llama.attribute(["a b c d e f", "f e d c"], max_new_tokens=2, method="saliency")
    a = evaluate(out, metrics=["soft_ns", "soft_nc"], model=tiny_llama, seed=3)
    b = evaluate(out, metrics=["soft_ns", "soft_nc"], model=tiny_llama, seed=3)
    c = evaluate(out, metrics=["soft_ns", "soft_nc"], model=tiny_llama, seed=4)
    for m in ("soft_ns", "soft_nc"):
        assert torch.equal(a.per_step[m], b.per_step[m])  # a repeat call
        assert torch.equal(a.random_per_step[m], b.random_per_step[m])
    assert not torch.equal(a.per_step["soft_nc"], c.per_step["soft_nc"])


def test_values_do_not_depend_on_what_is_evaluated_alongside(tiny_llama):
    out = tiny_llama.attribute(["a b c d e f", "f e d c"], max_new_tokens=2, method="saliency")
    both = evaluate(out, metrics="all", model=tiny_llama)
    first = evaluate(out[0], metrics="all", model=tiny_llama)
    n = first.per_step["soft_ns"].shape[0]
    for m in genattrib.list_metrics():
        # other batches; metrics of probabilities round at their scale (1) even where they are small
        scale = max(1.0, float(first.per_step[m].nan_to_num().abs().max()))
        assert_close_to_scale(both.per_step[m][:n], first.per_step[m], floor=TINY_MODEL, what=m, scale=scale)


def test_k_zero_and_k_all_edge_cases(tiny_llama):
    out = tiny_llama.attribute(["a b c d e f", "b c d"], max_new_tokens=2, method="saliency")
    steps = collect_steps(out)
    zero = evaluate(out, metrics=["comprehensiveness", "sufficiency", "log_odds"], model=tiny_llama, k=0)
    full = evaluate(out, metrics=["comprehensiveness", "sufficiency", "log_odds"], model=tiny_llama, k=100)
    assert torch.equal(zero.per_step["comprehensiveness"], torch.zeros(steps.num_steps))  # nothing removed
    assert torch.equal(zero.per_step["log_odds"], torch.zeros(steps.num_steps))
    assert torch.equal(full.per_step["sufficiency"], torch.zeros(steps.num_steps))  # everything kept
    # K = 0 sufficiency / K = T comprehensiveness: the model sees no prompt token at all; both read
    # the target after a lone baseline token, so they are equal
    got, want = zero.per_step["sufficiency"], full.per_step["comprehensiveness"]
    assert_close_to_scale(got, want, floor=TINY_MODEL, what="lone-baseline probabilities", scale=1.0)
    assert not torch.equal(full.per_step["comprehensiveness"], torch.zeros(steps.num_steps))


def test_metric_values_lie_in_their_declared_range(tiny_model):
    out = tiny_model.attribute(["a b c d e f", "b c d"], max_new_tokens=3, method="input_x_gradient")
    res = evaluate(out, metrics="all", model=tiny_model)
    for name, values in res.per_step.items():
        low, high = genattrib.evaluation.METRICS[name].value_range
        assert torch.all((values >= low - 1e-6) & (values <= high + 1e-6)), name
        interval = res.summary[name]
        assert math.isfinite(interval.value)
        assert interval.low <= interval.value <= interval.high, name


def test_special_tokens_are_never_removed(tiny_llama):
    out = tiny_llama.attribute("a b c d e f", max_new_tokens=1, method="saliency")
    steps = collect_steps(out)
    special = steps.special[0].clone()
    special[0] = True
    steps = type(steps)(steps.prefixes, steps.scores, [special], steps.target_ids, steps.example, steps.step)
    assert 0 not in steps.order(0).tolist()
