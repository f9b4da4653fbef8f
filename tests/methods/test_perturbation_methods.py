"""ReAGent, LIME and the token samplers: seeding, normalisation, batching, planted signal,
models that only give logits."""

from __future__ import annotations

import pytest
import torch
from tiny import make_model, make_planted_model, make_tokenizer
from tolerance import OPS, PERTURBATION, assert_close_to_scale, assert_same_sequence
from transformers import BertConfig, BertForMaskedLM

import genattrib
from genattrib.errors import MissingDependencyError
from genattrib.methods import get_method
from genattrib.methods.lime import weighted_ridge
from genattrib.methods.token_samplers import ModelSampler, PosSampler, UniformSampler, resolve_sampler
from genattrib.methods.vocabulary import Vocabulary

pytestmark = pytest.mark.numeric  # floats through other shapes: nox -s tests-portable re-runs them

PROMPTS = ["The capital of France is", "A quick brown fox", "Once upon a time there"]
TARGETS = [" Paris.", " jumps over", " was a model"]
FAST = {"reagent": {"num_probes": 4, "max_steps": 12}, "lime": {"n_samples": 24}}


def _scores(model, method, seed, prompt=PROMPTS[0], target=TARGETS[0], **extra):
    out = model.attribute(prompt, target=target, method=method, seed=seed, **{**FAST[method], **extra})
    return out.sequences[0]


@pytest.mark.parametrize("method", ["reagent", "lime"])
def test_seeded_and_nan_after_target(tiny_llama, method):
    a, b, c = (_scores(tiny_llama, method, s) for s in (1, 1, 2))
    assert torch.equal(a.scores.nan_to_num(0), b.scores.nan_to_num(0))  # a repeat call
    assert not torch.allclose(a.scores.nan_to_num(0), c.scores.nan_to_num(0))
    for j, p in enumerate(a.target_positions):
        assert torch.isfinite(a.scores[j, :p]).all() and a.scores[j, p:].isnan().all()
    assert a.scores.shape[0] == a.num_steps


@pytest.mark.parametrize("distance", ["prob_drop", "distribution"])
def test_reagent_scores_sum_to_one_with_iterations(tiny_model, distance):
    seq = _scores(tiny_model, "reagent", 0, distance=distance)
    assert_close_to_scale(seq.scores.nan_to_num(0).sum(-1), torch.ones(seq.num_steps), floor=OPS)
    iterations = seq.step_scores["reagent_iterations"]
    assert ((iterations >= 1) & (iterations <= FAST["reagent"]["max_steps"])).all()


@pytest.mark.parametrize("method", ["reagent", "lime"])
def test_batched_equals_one_at_a_time(tiny_llama, method):
    together = tiny_llama.attribute(PROMPTS, target=TARGETS, method=method, seed=5, **FAST[method])
    chunked = tiny_llama.attribute(PROMPTS, target=TARGETS, method=method, seed=5, max_rows=3, **FAST[method])
    for k, (p, t) in enumerate(zip(PROMPTS, TARGETS)):
        alone = tiny_llama.attribute(p, target=t, method=method, seed=5, **FAST[method]).sequences[0]
        for seq in (together.sequences[k], chunked.sequences[k]):
            assert_same_sequence(seq, alone, floor=PERTURBATION, what=f"prompt {k}")


def test_reagent_finds_planted_positions_in_most_seeds(planted):
    """The planted model's top-1 needs exactly two positions, so probes keep 2 and test top-1."""
    model, positions = planted
    wins = 0
    for seed in range(10):
        seq = model.attribute(
            "The capital of France is Paris and",
            max_new_tokens=3,
            method="reagent",
            seed=seed,
            keep_top_n=2,
            stop_top_k=1,
        ).sequences[0]
        wins += all(sorted(row.nan_to_num(-1).topk(2).indices.tolist()) == sorted(positions) for row in seq.scores)
    assert wins >= 9


def _logits_only(tokenizer):
    """A tiny model whose every forward runs under no_grad with frozen weights: only logits."""
    hf = make_model("llama", tokenizer).requires_grad_(False)
    for module in (hf, hf.model, hf.lm_head):
        module.forward = torch.no_grad()(module.forward)
    return genattrib.load_model((hf, tokenizer))


@pytest.mark.parametrize("method", ["reagent", "occlusion", "lime"])
def test_forward_only_methods_need_only_logits(tiny_tokenizer, method):
    model = _logits_only(tiny_tokenizer)
    params = FAST.get(method, {})
    seq = model.attribute(PROMPTS[0], target=TARGETS[0], method=method, **params).sequences[0]
    assert torch.isfinite(seq.scores[0, : seq.target_positions[0]]).all()


def test_gradient_method_on_logits_only_model_fails_clearly(tiny_tokenizer):
    model = _logits_only(tiny_tokenizer)
    with pytest.raises(genattrib.UnsupportedModelError, match="saliency.*reagent, occlusion or lime"):
        model.attribute(PROMPTS[0], target=TARGETS[0], method="saliency")


def test_mlm_sampler_with_tiny_random_bert(tiny_llama):
    mlm_tok = make_tokenizer()
    mlm_tok.add_special_tokens({"mask_token": "<mask>"})
    torch.manual_seed(0)
    bert = BertForMaskedLM(
        BertConfig(
            vocab_size=len(mlm_tok),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
        )
    ).eval()
    vocab = Vocabulary.from_tokenizer(tiny_llama.tokenizer)
    sampler = resolve_sampler(None, vocab, None, mlm=(bert, mlm_tok))
    ids = torch.tensor([[10, 11, 12, 13]] * 3)
    mask = torch.tensor([[True, False, True, False]] * 3)
    out = sampler.sample(ids, mask, torch.Generator().manual_seed(0))
    assert torch.equal(out[~mask], ids[~mask])
    assert not torch.isin(out[mask], torch.tensor(vocab.special_ids)).any() and (out < vocab.size).all()
    seq = _scores(tiny_llama, "reagent", 0, mlm=(bert, mlm_tok))
    assert_close_to_scale(seq.scores.nan_to_num(0).sum(-1), torch.ones(seq.num_steps), floor=OPS)


def test_model_and_uniform_samplers(tiny_llama):
    vocab = Vocabulary.from_tokenizer(tiny_llama.tokenizer)
    ids = torch.tensor([[10, 11, 12, 13, 14]])
    mask = torch.ones_like(ids, dtype=torch.bool)
    uniform = UniformSampler(vocab).sample(ids, mask, torch.Generator().manual_seed(0))
    assert not torch.isin(uniform, torch.tensor(vocab.special_ids)).any()
    from genattrib.engine.forward import ModelForward

    sampler = ModelSampler(ModelForward(tiny_llama.model), vocab)
    first = sampler.sample(ids, mask, torch.Generator().manual_seed(0))
    again = sampler.sample(ids, mask, torch.Generator().manual_seed(1))
    assert torch.equal(first[:, 1:], again[:, 1:])  # the model's own (deterministic) choice
    assert (first[:, 1:] != ids[:, 1:]).all()
    seq = _scores(tiny_llama, "reagent", 0, token_sampler="model")
    assert_close_to_scale(seq.scores.nan_to_num(0).sum(-1), torch.ones(seq.num_steps), floor=OPS)


def test_unknown_sampler_and_missing_pos_tagger(tiny_llama):
    with pytest.raises(genattrib.UnknownNameError, match="mlm, model, pos, uniform"):
        tiny_llama.attribute(PROMPTS[0], target=TARGETS[0], method="reagent", token_sampler="bert")
    try:
        import nltk  # noqa: F401
    except ImportError:
        with pytest.raises(MissingDependencyError, match="nltk"):
            tiny_llama.attribute(PROMPTS[0], target=TARGETS[0], method="reagent", token_sampler="pos")
    with pytest.raises(genattrib.InvalidArgumentError, match="replace_ratio"):
        get_method("reagent", replace_ratio=1.5)


def _fake_tag(word):
    """A deterministic stand-in for a POS tagger: full tags that share their first two letters."""
    return ("NN", "NNS", "NNP", "VB", "VBD")[sum(map(ord, word)) % 5]


def test_pos_sampler_tags_each_decoded_token_alone_and_groups_by_full_tag(tiny_llama, monkeypatch):
    """The reference tags ``decode([i]).strip()`` of every id as a one-word sentence and groups by
    the full tag; here through a fake ``nltk`` module that refuses longer sentences."""
    import sys
    import types

    seen = []

    def pos_tag_sents(sentences):
        assert all(len(s) == 1 for s in sentences), "every token must be tagged alone"
        seen.extend(s[0] for s in sentences)
        return [[(s[0], _fake_tag(s[0]))] for s in sentences]

    monkeypatch.setitem(sys.modules, "nltk", types.SimpleNamespace(pos_tag_sents=pos_tag_sents))
    tok = tiny_llama.tokenizer
    vocab = Vocabulary.from_tokenizer(tok)
    sampler = resolve_sampler("pos", vocab, None)
    assert seen == [tok.decode([i]).strip() for i in range(len(tok))]
    assert sampler.tags == tuple(_fake_tag(w) for w in seen)
    ids = torch.arange(len(tok)).unsqueeze(0).repeat(4, 1)
    ids = ids[:, ~torch.isin(ids[0], torch.tensor(vocab.special_ids))]
    mask = torch.rand(ids.shape, generator=torch.Generator().manual_seed(0)) < 0.5
    out = sampler.sample(ids, mask, torch.Generator().manual_seed(1))
    assert torch.equal(out[~mask], ids[~mask])
    tags = [sampler.tags[i] for i in out[mask].tolist()]
    assert tags == [sampler.tags[i] for i in ids[mask].tolist()]  # the full tag, NN never becomes NNS
    assert not torch.isin(out, torch.tensor(vocab.special_ids)).any()
    assert (out[mask] != ids[mask]).float().mean() > 0.5  # really redrawn within the group
    seq = _scores(tiny_llama, "reagent", 0, token_sampler=sampler)
    assert_close_to_scale(seq.scores.nan_to_num(0).sum(-1), torch.ones(seq.num_steps), floor=OPS)


def test_pos_sampler_takes_a_tagger_and_checks_it():
    vocab = Vocabulary(size=5, special_ids=(0,), tokens=("<s>", "Ġcat", "Ġcats", "Ġran", "Ġrun"))
    tags = {"cat": "NN", "cats": "NNS", "ran": "VBD", "run": "VB", "<s>": "NN"}
    sampler = PosSampler(vocab, tagger=lambda words: [tags[w] for w in words])
    assert [m.tolist() for m in sampler.members] == [[1], [2], [4], [3]]  # NN, NNS, VB, VBD: never merged
    ids = torch.tensor([[0, 1, 2, 3, 4]] * 8)
    keep_first = torch.ones_like(ids, dtype=torch.bool).index_fill(1, torch.tensor([0]), False)
    out = sampler.sample(ids, keep_first, torch.Generator().manual_seed(0))
    assert torch.equal(out, ids)  # one member per group: each token can only be redrawn as itself
    with pytest.raises(genattrib.InvalidArgumentError, match="tagger"):
        PosSampler(vocab, tagger=lambda words: ["NN"])


def test_weighted_ridge_recovers_a_linear_function():
    gen = torch.Generator().manual_seed(0)
    z = (torch.rand(64, 5, generator=gen) < 0.5).double()
    coef = torch.tensor([1.0, -2.0, 0.0, 0.5, 3.0], dtype=torch.double)
    w = torch.rand(64, generator=gen, dtype=torch.double) + 0.5
    fit, r2 = weighted_ridge(z, z @ coef + 0.7, w, alpha=1e-8)
    torch.testing.assert_close(fit, coef)  # float64: its default tolerance (1e-7) is far above the double floor
    assert float(r2) == pytest.approx(1.0)


def test_lime_and_reagent_on_planted_model(tiny_tokenizer):
    model = genattrib.load_model((make_planted_model(tiny_tokenizer), tiny_tokenizer))
    seq = model.attribute(
        "The capital of France is Paris and", max_new_tokens=2, method="lime", n_samples=100
    ).sequences[0]
    for row in seq.scores:
        assert sorted(row.abs().nan_to_num(-1).topk(2).indices.tolist()) == [1, 3]
    assert (seq.step_scores["lime_score"] > 0.5).all()


@pytest.mark.default_model
def test_reagent_on_paris_points_at_france_or_capital(default_model):
    """Observed, not a guarantee: the prompt has 5 tokens, no more than keep_top_n=5, so the
    stopping test replaces nothing and every probe stops after one iteration; the scores are one
    update on top of the random start. Seeds 0 and 1 put the largest score on ' capital', seed 2
    on ' of'."""
    out = default_model.attribute("The capital of France is", target=" Paris", method="reagent", seed=0)
    seq = out.sequences[0]
    row = seq.scores[0, :5]
    assert seq.step_scores["reagent_iterations"].tolist() == [1.0]
    assert float(row.sum()) == pytest.approx(1.0, abs=1e-5)
    assert int(row.argmax()) in (1, 3), row
