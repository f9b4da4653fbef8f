"""The perturbation, discrete-path, sequential-IG, ReAGent and rollout methods on encoder-decoder
models: the source is attributed (the target prefix too with ``attribute_prefix=True``, held fixed
and NaN otherwise), each side's own embedding feeds the path methods, and what cannot run (RPI,
ReAGent's model sampler) is refused before any work."""

from __future__ import annotations

import pytest
import torch
from tiny_seq2seq import make_seq2seq_model

import genattrib
from genattrib.methods.discretized_integrated_gradients import DiscretizedIntegratedGradients
from genattrib.methods.uniform_discretized_integrated_gradients import UniformDiscretizedIntegratedGradients

SOURCE = "The capital of France is"
TARGET = "Paris is"
TWO_SENTENCES = "The capital of France is Paris. The capital of Italy is Rome."


@pytest.fixture(scope="module")
def models(tok):
    return {kind: make_seq2seq_model(kind, tok) for kind in ("t5", "bart")}


def _ids(model, tok, target: str = TARGET) -> tuple[list[int], list[int]]:
    return tok(SOURCE)["input_ids"], [model.config.decoder_start_token_id, *tok(text_target=target)["input_ids"]]


def _logprobs(model, tok, e_src: torch.Tensor, e_dec: torch.Tensor) -> torch.Tensor:
    """logprob of each target token from the given source and decoder-input embeddings."""
    _, dec = _ids(model, tok)
    with torch.no_grad():
        logits = model(inputs_embeds=e_src[None], decoder_inputs_embeds=e_dec[None]).logits[0, :-1]
    return torch.log_softmax(logits, -1).gather(-1, torch.tensor(dec[1:])[:, None])[:, 0]


def _embeddings(model, tok) -> tuple[torch.Tensor, torch.Tensor]:
    src, dec = _ids(model, tok)
    with torch.no_grad():
        return model.get_encoder().embed_tokens(torch.tensor(src)), model.get_decoder().embed_tokens(torch.tensor(dec))


# --- perturbation over source units ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "kind", "extra"), [("lime", "t5", {}), ("context_ablation", "bart", {"solver": "ridge", "alpha": 1e-3})]
)
def test_perturbation_methods_ablate_source_sentences_whole(method, kind, extra, models, tok):
    """sources="sentences": every position of a source sentence carries that unit's share, the two
    sentences differ, the held target prefix is NaN; context_ablation's target_value is F(x) as the
    model computes it."""
    model = genattrib.load_model((models[kind], tok))
    out = model.attribute(
        TWO_SENTENCES,
        TARGET,
        method=method,
        sources="sentences",
        n_samples=24,
        seed=1,
        attributed_fn="logprob",
        **extra,
    )
    seq = out.sequences[0]
    assert len(seq.source_spans) == 2 and seq.source_spans[1][1] <= seq.source_length
    for a, b in seq.source_spans:
        unit = seq.scores[:, a:b]
        assert torch.isfinite(unit).all() and torch.equal(unit, unit[:, :1].expand_as(unit))
    assert not torch.equal(seq.scores[:, seq.source_spans[0][0]], seq.scores[:, seq.source_spans[1][0]])
    assert torch.isnan(seq.target_scores).all()
    if method == "context_ablation":
        src = tok(TWO_SENTENCES)["input_ids"]
        dec = [models[kind].config.decoder_start_token_id, *tok(text_target=TARGET)["input_ids"]]
        with torch.no_grad():
            logits = models[kind](input_ids=torch.tensor([src]), decoder_input_ids=torch.tensor([dec])).logits[0, :-1]
        want = torch.log_softmax(logits, -1).gather(-1, torch.tensor(dec[1:])[:, None])[:, 0]
        assert torch.allclose(seq.step_scores["target_value"], want, atol=1e-5 * float(want.abs().max()))


def test_lime_attributes_the_prefix_when_asked_and_a_batch_equals_each_source_alone(models, tok):
    """attribute_prefix=True: the prefix tokens are perturbed too (finite, not all zero); several
    sources in one call give each the scores it gets alone (masks are seeded by content)."""
    model = genattrib.load_model((models["t5"], tok))
    kwargs = dict(method="lime", n_samples=16, seed=0, attribute_prefix=True)
    texts = [SOURCE, "The quick fox"]
    batch = model.attribute(texts, [TARGET, TARGET], **kwargs)
    for text, seq in zip(texts, batch.sequences):
        alone = model.attribute(text, TARGET, **kwargs).sequences[0]
        assert seq.tokens == alone.tokens
        assert torch.equal(seq.scores.nan_to_num(7.0), alone.scores.nan_to_num(7.0))
    seq = batch.sequences[0]
    prefix = seq.target_scores[-1, 1:-1]  # the decoder start is special (held), the last is the target
    assert torch.isfinite(prefix).all() and prefix.abs().sum() > 0


# --- path methods: each side's own vocabulary, completeness ----------------------------------------


@pytest.fixture(scope="module")
def two_vocabularies(tok):
    """A T5 whose encoder has its own token embedding (twice the decoder's): a path method that read
    the wrong side's vocabulary would pick anchors off the side's embeddings."""
    model = make_seq2seq_model("t5", tok)
    own = torch.nn.Embedding(*model.shared.weight.shape)
    with torch.no_grad():
        own.weight.copy_(model.shared.weight * 2)
    model.encoder.set_input_embeddings(own)
    return model


@pytest.mark.parametrize("cls", [DiscretizedIntegratedGradients, UniformDiscretizedIntegratedGradients])
def test_discrete_paths_walk_each_sides_own_vocabulary(cls, two_vocabularies, tok, monkeypatch):
    """Source tokens search anchors among the encoder's embeddings, prefix tokens among the
    decoder's; the reported completeness_error is Σ scores − (F(x) − F(x')) with F computed here
    from the model (x' the zero baseline on both sides)."""
    model = two_vocabularies
    seen = []
    search = cls.search_anchors

    def spy(self, words, inputs, base, vocab, forward):
        seen.append((vocab, words, inputs))
        return search(self, words, inputs, base, vocab, forward)

    monkeypatch.setattr(cls, "search_anchors", spy)
    extra = {"cache_dir": False} if cls is DiscretizedIntegratedGradients else {}
    out = genattrib.load_model((model, tok)).attribute(
        SOURCE,
        TARGET,
        method=cls.name,
        n_anchors=6,
        baseline="zero",
        attribute_prefix=True,
        attributed_fn="logprob",
        **extra,
    )
    matrices = {id(v): v for v, _, _ in seen}
    assert len(matrices) == 2
    enc, dec = model.encoder.embed_tokens.weight, model.decoder.embed_tokens.weight
    for vocab, words, inputs in seen:
        assert torch.equal(vocab[words], inputs)  # the words' own rows: the inputs come from this side
        assert torch.equal(vocab, enc) or torch.equal(vocab, dec)
    assert any(torch.equal(v, enc) for v in matrices.values()) and any(torch.equal(v, dec) for v in matrices.values())
    seq = out.sequences[0]
    e_src, e_dec = _embeddings(model, tok)
    src_held = torch.tensor([t in tok.all_special_ids for t in _ids(model, tok)[0]])
    dec_held = torch.tensor([t in tok.all_special_ids for t in _ids(model, tok)[1]])
    base_src = e_src.masked_fill(~src_held[:, None], 0)
    f_base = _causal_baseline(model, tok, base_src, e_dec, dec_held)
    assert torch.allclose(seq.step_scores["baseline_value"], f_base, atol=1e-5 * float(f_base.abs().max()))
    gap = _logprobs(model, tok, e_src, e_dec) - f_base
    scale = max(1.0, float(gap.abs().max()))
    assert torch.allclose(seq.scores.nansum(-1) - gap, seq.step_scores["completeness_error"], atol=1e-4 * scale)


def _causal_baseline(model, tok, base_src, e_dec, dec_held) -> torch.Tensor:
    """F(x') of each step: the source at its baseline and the prefix before the step at its baseline
    (a step's own predicted token is not an input of that step)."""
    values = []
    for step in range(int(e_dec.shape[0]) - 1):
        dec = e_dec.clone()
        dec[: step + 1] = dec[: step + 1].masked_fill(~dec_held[: step + 1, None], 0)
        values.append(_logprobs(model, tok, base_src, dec)[step])
    return torch.stack(values)


def test_sequential_ig_moves_one_source_position_at_a_time(models, tok):
    """SIG's score of source position i is F(x) − F(x with only i at the baseline), F from the model;
    the target prefix, held fixed, reads NaN."""
    model = models["bart"]
    out = genattrib.load_model((model, tok)).attribute(
        SOURCE, TARGET, method="sequential_integrated_gradients", n_steps=64, baseline="zero", attributed_fn="logprob"
    )
    seq = out.sequences[0]
    e_src, e_dec = _embeddings(model, tok)
    f_x = _logprobs(model, tok, e_src, e_dec)
    src = _ids(model, tok)[0]
    for i, token in enumerate(src):
        if token in tok.all_special_ids:
            assert torch.isnan(seq.scores[:, i]).all() or (seq.scores[:, i] == 0).all()
            continue
        moved = e_src.clone()
        moved[i] = 0
        want = f_x - _logprobs(model, tok, moved, e_dec)
        scale = max(1.0, float(want.abs().max()))
        assert torch.allclose(seq.scores[:, i], want, atol=2e-3 * scale), i
    assert torch.isnan(seq.target_scores).all()


# --- ReAGent, rollout, refusals --------------------------------------------------------------------


@pytest.mark.parametrize("prefix", [None, True])
def test_reagent_replaces_source_tokens(prefix, models, tok):
    """ReAGent's scores are a distribution over what it may replace: the source (and the prefix with
    attribute_prefix=True), never the held side."""
    model = genattrib.load_model((models["bart"], tok))
    seq = model.attribute(
        SOURCE,
        TARGET,
        method="reagent",
        seed=0,
        num_probes=4,
        max_steps=4,
        stop_top_k=len(tok),
        attribute_prefix=prefix,
    ).sequences[0]
    s = seq.source_length
    assert torch.allclose(seq.scores.nansum(-1), torch.ones(seq.num_steps))
    assert (seq.source_scores[:, : s - 1] > 0).all()
    if prefix:
        assert (seq.target_scores[-1, 1:-1] > 0).all()
    else:
        assert torch.isnan(seq.target_scores).all()


@pytest.mark.parametrize("kind", ["t5", "bart"])
def test_rollout_follows_both_stacks(kind, models, tok):
    """Rollout over the encoder's self-attention, then each decoder layer's self- and cross-attention
    (rows of [source, prefix] sum to 1), read from the model's own eager attention outputs."""
    hf = models[kind]
    src, dec = _ids(hf, tok)
    previous = hf.config._attn_implementation
    hf.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            got = hf(input_ids=torch.tensor([src]), decoder_input_ids=torch.tensor([dec]), output_attentions=True)
    finally:
        hf.set_attn_implementation(previous)
    w = 0.5

    def mixed(a):
        m = (1 - w) * a[0].mean(0) + w * torch.eye(a.shape[-1])
        return m / m.sum(-1, keepdim=True)

    r_ss = torch.eye(len(src))
    for a in got.encoder_attentions:
        r_ss = mixed(a) @ r_ss
    r_tt, r_ts = torch.eye(len(dec)), torch.zeros(len(dec), len(src))
    for own, cross in zip(got.decoder_attentions, got.cross_attentions):
        r_tt, r_ts = mixed(own) @ r_tt, mixed(own) @ r_ts
        r_ts, r_tt = w * r_ts + (1 - w) * cross[0].mean(0) @ r_ss, w * r_tt
    want = torch.cat([r_ts, r_tt], -1)[:-1]  # decoder position j predicts target token j + 1
    seq = (
        genattrib.load_model((hf, tok)).attribute(SOURCE, TARGET, method="rollout", attribute_prefix=True).sequences[0]
    )
    s = seq.source_length
    for step in range(seq.num_steps):
        row = seq.scores[step, : s + step + 1]
        assert torch.allclose(row, want[step, : s + step + 1], atol=1e-5), step
    assert torch.allclose(seq.scores.nansum(-1), torch.ones(seq.num_steps), atol=1e-5)
    source_only = genattrib.load_model((hf, tok)).attribute(SOURCE, TARGET, method="rollout").sequences[0]
    assert torch.equal(source_only.source_scores, seq.source_scores) and torch.isnan(source_only.target_scores).all()


@pytest.mark.parametrize(
    ("kwargs", "argument", "words"),
    [
        (dict(method="rpi"), "method", "cross-attention"),
        (dict(method="reagent", token_sampler="model"), "token_sampler", "predicts no source token"),
    ],
)
def test_methods_without_a_definition_on_two_stacks_are_refused(kwargs, argument, words, models, tok, monkeypatch):
    model = genattrib.load_model((models["t5"], tok))
    monkeypatch.setattr(type(models["t5"]), "generate", lambda *a, **k: pytest.fail("generated"))
    with pytest.raises(genattrib.InvalidArgumentError) as info:
        model.attribute(SOURCE, **kwargs)
    assert info.value.argument == argument and words in str(info.value)
