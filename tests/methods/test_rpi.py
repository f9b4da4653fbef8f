"""RPI: integration over one layer's attention probabilities, checked against direct loops."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
from tolerance import OPS, TINY_MODEL, assert_close_to_scale, assert_identical

import genattrib
from genattrib import InvalidArgumentError
from genattrib.engine.attention_capture import AttentionProbe, attention_probe
from genattrib.engine.contract import RowBatch
from genattrib.engine.forward import ModelForward
from genattrib.evaluation import METRICS, evaluate
from genattrib.methods import rpi as rpi_module
from genattrib.methods.rpi import alpha_bar
from genattrib.targets import resolve_target

pytestmark = pytest.mark.numeric  # floats through other shapes: nox -s tests-portable re-runs them

PROMPT = "The capital of France is"
TARGET = " Paris"
FAST = {"num_samples": 3, "n_steps": 4}


def _direct(am, out, layer, alphas, baseline, weighting, fn="logit"):
    """Scores of the single target of ``out`` by plain autograd loops (eager A, one point at a time);
    ``baseline`` is ``"zeros"``, ``"attention"`` or a callable ``A -> b``; ``fn`` the explained value."""
    seq = out.sequences[0]
    ids, p = seq.input_ids, seq.target_positions[0]
    model = am.model
    embeds = model.get_input_embeddings()(ids[:p]).detach().unsqueeze(0)
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    with torch.no_grad():
        a = eager(inputs_embeds=embeds, output_attentions=True).attentions[layer][0]  # head p p
    if callable(baseline):
        b = baseline(a)
    else:
        b = torch.zeros_like(a) if baseline == "zeros" else a.clone()
    vg, gs = torch.zeros_like(a), torch.zeros_like(a)
    weights = torch.ones(len(alphas)) / len(alphas) if np.ndim(alphas[0]) == 0 else None
    for i, alpha in enumerate(alphas):
        w = float(weights[i]) if weights is not None else float(alpha[1])
        alpha = float(alpha) if weights is not None else float(alpha[0])
        v = (b + alpha * (a - b)).requires_grad_(True)
        with attention_probe(model, AttentionProbe(inject={layer: v.unsqueeze(0)})):
            logits = model(inputs_embeds=embeds).logits[0, -1]
            value = (logits.log_softmax(-1) if fn == "logprob" else logits)[int(ids[p])]
        (g,) = torch.autograd.grad(value, v)
        vg += w * v.detach() * g
        gs += w * g
    maps = vg * a if weighting == "attention" else (a - b) * gs
    return maps.mean(0)[p - 1]


def _scores(am, **params):
    out = am.attribute(PROMPT, target=TARGET, method="rpi", **params)
    seq = out.sequences[0]
    return out, seq.scores[0, : seq.target_positions[0]]


def test_noise_schedule():
    assert abs(alpha_bar(500) - 0.0063) < 5e-5
    assert alpha_bar(0) == pytest.approx(1 - 1e-4)


def _reference_baseline(a, eps, abar, noise_rows):
    """The reference's rule (rpiconf/rpi run_rpi): a noise tensor that is ``eps`` on the noised
    query rows and ``A`` elsewhere, then ``sqrt(abar) A + (1 - abar) noise``; causal entries only."""
    p = a.shape[-1]
    noise = a.clone()
    rows = p if noise_rows == "all" else p - 1
    causal = torch.ones(p, p).tril().bool()
    noise[:, :rows] = (eps * causal)[:, :rows]
    return abar**0.5 * a + (1 - abar) * noise


@pytest.mark.parametrize("noise_rows", ["inputs", "all"])
def test_noise_rows_follow_the_reference_rule(tiny_llama, monkeypatch, noise_rows):
    """The baseline is the reference's construction, and the scores are the plain-autograd integral
    from it: under ``inputs`` the explained row starts from (sqrt(abar) + 1 - abar) A, not noise."""
    made = []
    original = rpi_module.make_baseline

    def recording(params, attention, allowed, prefix, seed):
        base = original(params, attention, allowed, prefix, seed)
        gen = torch.Generator().manual_seed(seed)
        eps = torch.randn(attention.shape[0], prefix, prefix, generator=gen)
        made.append((prefix, base[:, :prefix, :prefix].clone(), attention[:, :prefix, :prefix].clone(), eps))
        return base

    monkeypatch.setattr(rpi_module, "make_baseline", recording)
    n = 6
    out, got = _scores(tiny_llama, num_samples=1, n_steps=n, layer=0, noise_rows=noise_rows)
    first = out.sequences[0].target_positions[0]  # the row _scores reads (one sample: one baseline)
    ((base, a, eps),) = {m[0]: m[1:] for m in made if m[0] == first}.values()
    abar = alpha_bar(500)
    reference = _reference_baseline(a, eps, abar, noise_rows)
    assert_close_to_scale(base, reference, floor=OPS, what="baseline vs its formula")
    explained = base[:, -1]
    if noise_rows == "inputs":
        assert_close_to_scale(explained, (abar**0.5 + 1 - abar) * a[:, -1], floor=OPS, what="explained row")
    else:
        assert not torch.allclose(explained, (abar**0.5 + 1 - abar) * a[:, -1], atol=1e-3)
    assert not torch.allclose(base[:, :-1], (abar**0.5 + 1 - abar) * a[:, :-1], atol=1e-3)  # inputs are noised
    expected = _direct(tiny_llama, out, 0, [k / n for k in range(n + 1)], lambda _: base, "attention")
    assert_close_to_scale(got, expected, floor=TINY_MODEL, what="RPI vs the direct sum")
    assert out.provenance.method_params["noise_rows"] == noise_rows


def test_default_target_is_the_logit_and_recorded(tiny_llama):
    """attributed_fn=None takes RPI's default (the reference differentiates the logit); an explicit
    value wins; other methods keep the log-probability."""
    out, default = _scores(tiny_llama, seed=3, **FAST)
    assert out.provenance.attributed_fn == "logit"
    _, logit = _scores(tiny_llama, seed=3, attributed_fn="logit", **FAST)
    assert_identical(default, logit)  # the same call
    explicit, logprob = _scores(tiny_llama, seed=3, attributed_fn="logprob", **FAST)
    assert explicit.provenance.attributed_fn == "logprob" and not torch.allclose(default, logprob)
    saliency = tiny_llama.attribute(PROMPT, target=TARGET, method="saliency")
    assert saliency.provenance.attributed_fn == "logprob"


def test_zero_noise_difference_map_is_zero_and_attention_map_is_a_squared_g(tiny_llama):
    _, diff = _scores(tiny_llama, baseline_kind="attention", weighting="difference", **FAST)
    assert torch.equal(diff, torch.zeros_like(diff))
    out, att = _scores(tiny_llama, baseline_kind="attention", weighting="attention", **FAST)
    expected = _direct(tiny_llama, out, 0, [1.0], "attention", "attention")  # A * g(A) * A
    assert_close_to_scale(att, expected, floor=TINY_MODEL, what="A * g(A) * A")
    assert att.abs().max() > 0


@pytest.mark.parametrize("weighting", ["difference", "attention"])
def test_zero_baseline_equals_direct_integral(tiny_llama, weighting):
    n = 200
    out, got = _scores(tiny_llama, baseline_kind="zeros", weighting=weighting, num_samples=1, n_steps=n, layer=0)
    same_points = _direct(tiny_llama, out, 0, [k / n for k in range(n + 1)], "zeros", weighting)
    assert_close_to_scale(got, same_points, floor=TINY_MODEL, what="RPI vs the direct sum")
    # and the mean over many equally spaced points approaches the integral (Gauss-Legendre, 24 nodes)
    nodes, weights = np.polynomial.legendre.leggauss(24)
    integral = _direct(tiny_llama, out, 0, list(zip((nodes + 1) / 2, weights / 2)), "zeros", weighting)
    assert (got - integral).abs().max() <= 0.02 * integral.abs().max()


def test_seeds(tiny_llama):
    _, a = _scores(tiny_llama, seed=7, **FAST)
    _, b = _scores(tiny_llama, seed=7, **FAST)
    _, c = _scores(tiny_llama, seed=8, **FAST)
    assert torch.equal(a, b)  # a repeat call
    assert not torch.allclose(a, c)
    _, first7 = _scores(tiny_llama, seed=7, selection="first", **FAST)
    _, first8 = _scores(tiny_llama, seed=8, selection="first", **FAST)
    assert not torch.allclose(first7, first8)


def test_first_is_the_first_candidate_of_mean(tiny_llama):
    _, first = _scores(tiny_llama, selection="first", **FAST)
    _, one = _scores(tiny_llama, num_samples=1, n_steps=FAST["n_steps"])
    assert_close_to_scale(first, one, floor=TINY_MODEL, what="first candidate vs one sample")  # other row counts


def test_runs_on_every_architecture(tiny_model):
    out = tiny_model.attribute(PROMPT, target=" Paris. The", method="rpi", **FAST)
    seq = out.sequences[0]
    for j, p in enumerate(seq.target_positions):
        assert torch.isfinite(seq.scores[j, :p]).all() and seq.scores[j, p:].isnan().all()
        assert seq.scores[j, :p].abs().sum() > 0
    assert torch.isfinite(seq.step_scores["rpi_candidate_spread"]).all()
    rows = seq.num_steps * (FAST["num_samples"] * (FAST["n_steps"] + 1) + 1)
    grad_rows = rows - seq.num_steps
    work = out.provenance.work
    assert {k: work[k] for k in ("rows", "grad_rows", "backward_rows")} == {
        "rows": rows,
        "grad_rows": grad_rows,
        "backward_rows": grad_rows,
    }
    assert (
        work["oom_retries"] == 0 and 1 <= work["max_chunk_rows"] <= rows <= work["model_calls"] * work["max_chunk_rows"]
    )


def test_batching_equals_one_at_a_time(tiny_llama):
    prompts = [PROMPT, "A quick brown fox"]
    together = tiny_llama.attribute(prompts, max_new_tokens=3, method="rpi", **FAST)
    chunked = tiny_llama.attribute(prompts, max_new_tokens=3, method="rpi", max_rows=5, **FAST)
    for i, prompt in enumerate(prompts):
        alone = tiny_llama.attribute(prompt, max_new_tokens=3, method="rpi", **FAST).sequences[0].scores
        assert_close_to_scale(together.sequences[i].scores, alone, floor=TINY_MODEL, what=f"prompt {i} together")
        assert_close_to_scale(chunked.sequences[i].scores, alone, floor=TINY_MODEL, what=f"prompt {i} chunked")


@pytest.mark.parametrize(
    "params,argument",
    [
        ({"num_samples": 0}, "num_samples"),
        ({"n_steps": True}, "n_steps"),
        ({"noise_t": 501}, "noise_t"),
        ({"noise_t": -1}, "noise_t"),
        ({"layer": True}, "layer"),
        ({"weighting": "paper"}, "weighting"),
        ({"selection": "best:nope"}, "selection"),
        ({"selection": "max"}, "selection"),
        ({"baseline_kind": "uniform"}, "baseline_kind"),
        ({"noise_rows": "outputs"}, "noise_rows"),
        ({"weighting": "difference"}, "noise_rows"),  # (A - b) on an un-noised explained row is no map
    ],
)
def test_bad_parameters(params, argument):
    with pytest.raises(InvalidArgumentError) as info:
        genattrib.methods.get_method("rpi", **params)
    assert info.value.argument == argument


def test_layer_out_of_range_fails_before_work(tiny_llama):
    with pytest.raises(InvalidArgumentError) as info:
        tiny_llama.attribute(PROMPT, max_new_tokens=2, method="rpi", layer=5)
    assert info.value.argument == "layer" and "2 layers" in info.value.problem
    _, negative = _scores(tiny_llama, layer=-2, **FAST)
    _, zero = _scores(tiny_llama, layer=0, **FAST)
    assert_identical(negative, zero)  # the same layer


@pytest.mark.default_model
def test_default_model(default_model):
    out = default_model.attribute(PROMPT, target=" Paris", method="rpi", num_samples=2, n_steps=3)
    seq = out.sequences[0]
    assert seq.scores.shape == (1, 6)
    assert torch.isfinite(seq.scores[0, :5]).all() and seq.scores[0, :5].abs().sum() > 0
    assert out.provenance.method_params["layer"] is None


@pytest.mark.parametrize("metric", ["comprehensiveness", "log_odds"])
def test_best_selection_keeps_the_candidate_the_metric_prefers(tiny_llama, metric):
    """best:<metric> returns, per target, the candidate map that scores best on that metric."""
    # noise on every row: the tiny model's candidates then differ in their top tokens (with the explained
    # row kept, all three rank the same tokens first and every metric ties)
    params = {"num_samples": 3, "n_steps": 4, "noise_rows": "all"}
    best = tiny_llama.attribute(PROMPT, max_new_tokens=2, method="rpi", selection=f"best:{metric}", **params)
    seq = best.sequences[0]
    # the candidates themselves, for the same rows the engine built
    method = genattrib.methods.get_method("rpi", **params)
    forward = ModelForward(tiny_llama.model)
    rows = len(seq.target_positions)
    input_ids = seq.input_ids.unsqueeze(0).expand(rows, -1).clone()
    embeds = forward.embed(input_ids)
    batch = RowBatch(
        input_ids,
        embeds,
        embeds.clone(),
        torch.tensor(seq.target_positions),
        seq.target_ids,
        seq.held_fixed.unsqueeze(0).expand(rows, -1).clone(),
        torch.zeros(rows, dtype=torch.long),
        seed=42,
    )
    cands = method.candidates(batch, forward, resolve_target("logit", {}))
    values = []
    for s in range(cands.shape[1]):
        scores = seq.scores.clone()
        for j, p in enumerate(seq.target_positions):
            scores[j, :p] = cands[j, s, :p]
        out = genattrib.FeatureAttributionOutput([replace(seq, scores=scores)], best.provenance)
        values.append(evaluate(out, metrics=[metric], model=tiny_llama).per_step[metric])
    values = torch.stack(values, 1)  # target sample
    pick = values.argmin(1) if METRICS[metric].lower_is_better else values.argmax(1)
    assert values.std(1).max() > 0  # the candidates really differ on the metric
    for j, p in enumerate(seq.target_positions):
        assert_close_to_scale(seq.scores[j, :p], cands[j, pick[j], :p], floor=TINY_MODEL, what=f"row {j}")
