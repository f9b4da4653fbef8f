"""Encoder-decoder models (T5, BART, Marian, mT5, M2M100/NLLB): loading, generation, attribution to
the source and the target prefix, the result's two sides through save/load, aggregation, console
and HTML, and the refusals."""

from __future__ import annotations

import io

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console
from tiny_seq2seq import FAMILIES, make_seq2seq_model

import genattrib
from genattrib.engine.seq2seq_forward import EncoderDecoderForward
from genattrib.generation.seq2seq_generate import generate_seq2seq_traces

SOURCE = "The capital of France is"
TARGET = "Paris is"


@pytest.fixture(scope="module")
def models(tok):
    return {kind: make_seq2seq_model(kind, tok) for kind in FAMILIES}


def _wrapped(models, tok, kind: str) -> genattrib.AttributionModel:
    return genattrib.load_model((models[kind], tok))


def _decoder_ids(model, tok, target: str = TARGET) -> list[int]:
    return [model.config.decoder_start_token_id, *tok(text_target=target)["input_ids"]]


@pytest.mark.parametrize("kind", FAMILIES)
def test_forward_reproduces_the_models_logits(kind, models, tok):
    """Rows ``source + decoder start + target`` give the logits the model computes from token ids,
    for every family (T5's output scaling, BART's/Marian's final_logits_bias, Marian's embedding scale)."""
    model = models[kind]
    src, dec = tok(SOURCE)["input_ids"], _decoder_ids(model, tok)
    with torch.no_grad():
        want = model(input_ids=torch.tensor([src]), decoder_input_ids=torch.tensor([dec])).logits
    forward = EncoderDecoderForward(model)
    with forward.encoding(len(src)):
        positions = torch.arange(len(src) + 1, len(src) + len(dec) + 1)[None]
        got = forward.logits_at(forward.embed(torch.tensor([src + dec])), positions)
    assert torch.allclose(got, want, atol=1e-5 * float(want.abs().max()), rtol=0)


def test_output_scale_is_calibrated_once_per_loaded_model(models, tok, monkeypatch):
    """The LM-head scale check (a model call) runs at the first forward of a wrapper; later forwards
    sharing its ``probed`` results reuse the scale without calling the model."""
    probed: dict[object, object] = {}
    first = EncoderDecoderForward(models["t5"], probed=probed)
    calls = []
    monkeypatch.setattr(EncoderDecoderForward, "_calibrated_output_scale", lambda self: calls.append(1) or 1.0)
    again = EncoderDecoderForward(models["t5"], probed=probed)
    assert calls == [] and again.output_scale == first.output_scale == probed["output_scale"]
    EncoderDecoderForward(models["t5"], probed={})
    assert calls == [1]


def test_loading_a_folder_gives_the_seq2seq_lm(models, tok, tmp_path):
    """A T5 folder loads as T5ForConditionalGeneration with its weights (once refused, and before that
    loaded silently as a bare decoder); a T5 encoder alone or a T5 without its LM head is refused up front."""
    from transformers import T5Config, T5EncoderModel, T5Model

    models["t5"].save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded = genattrib.load_model(tmp_path)
    assert type(loaded.model).__name__ == "T5ForConditionalGeneration"
    ids, dec = torch.tensor([tok(SOURCE)["input_ids"]]), torch.tensor([_decoder_ids(models["t5"], tok)])
    with torch.no_grad():
        assert torch.equal(
            loaded.model(input_ids=ids, decoder_input_ids=dec).logits,
            models["t5"](input_ids=ids, decoder_input_ids=dec).logits,
        )
    config = T5Config(d_model=8, d_ff=8, d_kv=4, num_layers=1, num_heads=2, vocab_size=len(tok))
    for bare in (T5EncoderModel(config), T5Model(config)):  # no decoder / no LM head
        with pytest.raises(genattrib.InvalidArgumentError, match="AutoModelForSeq2SeqLM") as info:
            genattrib.load_model((bare, tok))
        assert info.value.argument == "source"


@pytest.mark.parametrize("kind", ["t5", "bart"])
def test_generation_runs_the_encoder_once(kind, models, tok):
    """generate() encodes each batch of sources once and gives what model.generate gives."""
    model = models[kind]
    calls = []
    handle = model.get_encoder().register_forward_hook(lambda *args: calls.append(1))
    start = model.config.decoder_start_token_id
    prompts = [torch.tensor([*tok(text)["input_ids"], start]) for text in (SOURCE, "A quick brown fox")]
    from transformers import GenerationConfig

    config = GenerationConfig(max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=None)
    try:
        traces = generate_seq2seq_traces(model, prompts, config, batch_size=2)
    finally:
        handle.remove()
    assert len(calls) == 1
    for prompt, trace in zip(prompts, traces):
        want = model.generate(input_ids=prompt[None, :-1], generation_config=config)[0, 1:]
        assert trace.prompt_ids.tolist() == prompt.tolist() and trace.generated_ids.tolist() == want.tolist()


def _reference_gradients(model, tok, kind: str):
    """logprob of each target token and its gradient w.r.t. both sides' embeddings, straight from
    ``model(inputs_embeds=..., decoder_inputs_embeds=...)`` (T5 and BART take the embedding module's
    output as inputs_embeds)."""
    src, dec = tok(SOURCE)["input_ids"], _decoder_ids(model, tok)
    rows = []
    for t in range(1, len(dec)):
        e_src = model.get_encoder().embed_tokens(torch.tensor([src])).detach().requires_grad_(True)
        e_dec = model.get_decoder().embed_tokens(torch.tensor([dec[:t]])).detach().requires_grad_(True)
        logits = model(inputs_embeds=e_src, decoder_inputs_embeds=e_dec).logits
        value = torch.log_softmax(logits[0, -1], -1)[dec[t]]
        g_src, g_dec = torch.autograd.grad(value, (e_src, e_dec))
        rows.append((g_src[0], g_dec[0], e_src[0].detach(), e_dec[0].detach()))
    return src, dec, rows


@pytest.mark.parametrize("kind", ["t5", "bart"])
def test_gradients_match_autograd_on_the_model(kind, models, tok):
    """saliency and input_x_gradient equal a hand-computed torch.autograd reference on both sides."""
    model = _wrapped(models, tok, kind)
    src, dec, rows = _reference_gradients(models[kind], tok, kind)
    kwargs = dict(attribute_prefix=True, attribute_special_tokens=True)
    sal = model.attribute(SOURCE, TARGET, method="saliency", **kwargs).sequences[0]
    ixg = model.attribute(SOURCE, TARGET, method="input_x_gradient", **kwargs).sequences[0]
    s = len(src)
    assert sal.source_length == s and sal.tokens[s] == tok.convert_ids_to_tokens(dec[0])
    for j, (g_src, g_dec, e_src, e_dec) in enumerate(rows):
        t = g_dec.shape[0]
        want_sal = torch.cat([g_src.norm(dim=-1), g_dec.norm(dim=-1)])
        want_ixg = torch.cat([(g_src * e_src).sum(-1), (g_dec * e_dec).sum(-1)])
        scale = float(want_sal.abs().max())
        assert torch.allclose(sal.scores[j, : s + t], want_sal, atol=1e-5 * scale, rtol=0)
        assert torch.allclose(ixg.scores[j, : s + t], want_ixg, atol=1e-5 * float(want_ixg.abs().max()), rtol=0)
        assert torch.isnan(sal.scores[j, s + t :]).all()


def _logprobs(model, tok, zero_source: bool, zero_prefix: bool) -> torch.Tensor:
    """logprob of each target token with the source and/or the target prefix embeddings zeroed
    (zeros are a side's inputs_embeds whatever scaling the family applies after its embedding module)."""
    src, dec = tok(SOURCE)["input_ids"], _decoder_ids(model, tok)
    e_src = model.get_encoder().embed_tokens(torch.tensor([src]))
    e_dec = model.get_decoder().embed_tokens(torch.tensor([dec]))
    with torch.no_grad():
        logits = model(
            inputs_embeds=e_src * (0 if zero_source else 1), decoder_inputs_embeds=e_dec * (0 if zero_prefix else 1)
        ).logits[0, :-1]
    return torch.log_softmax(logits, -1).gather(-1, torch.tensor(dec[1:])[:, None])[:, 0]


@pytest.mark.parametrize("kind", ["t5", "bart", "marian", "m2m100"])
@pytest.mark.parametrize("prefix", [True, False])
def test_integrated_gradients_completeness(kind, prefix, models, tok):
    """IG's scores add up to F(x) - F(baseline) over the source and (attribute_prefix=True) the target
    prefix, F computed here from the model; the reported completeness_error is that gap. Source-only
    results leave the prefix NaN (held fixed, not attributed)."""
    model = _wrapped(models, tok, kind)
    out = model.attribute(
        SOURCE,
        TARGET,
        method="integrated_gradients",
        n_steps=64,
        baseline="zero",
        attribute_prefix=prefix,
        attribute_special_tokens=True,
    )
    seq = out.sequences[0]
    gap = _logprobs(models[kind], tok, False, False) - _logprobs(models[kind], tok, True, prefix)
    totals = seq.source_scores.nansum(-1) + (seq.target_scores.nansum(-1) if prefix else 0)
    error = seq.step_scores["completeness_error"]
    scale = max(1.0, float(gap.abs().max()))
    assert torch.allclose(totals - gap, error, atol=1e-4 * scale)  # the error reported is the real gap
    if kind != "t5":  # T5's RMSNorm near the zero baseline needs more than 64 points
        assert float(error.abs().max()) <= 2e-3 * scale
    assert torch.isfinite(seq.source_scores).all()
    if prefix:
        assert torch.isfinite(seq.target_scores[-1, :-1]).all()
    else:
        assert torch.isnan(seq.target_scores).all()


@pytest.mark.parametrize("method", ["gradient_shap", "occlusion"])
def test_other_methods_attribute_the_source(method, models, tok):
    model = _wrapped(models, tok, "marian")
    seq = model.attribute(SOURCE, TARGET, method=method, attribute_prefix=True).sequences[0]
    assert torch.isfinite(seq.source_scores[:, : seq.source_length - 1]).all()  # </s> is held fixed
    assert seq.source_scores[:, :-1].abs().sum() > 0
    assert torch.isfinite(seq.target_scores[-1, 1:-1]).all()  # the start token is held fixed (special)


@pytest.mark.parametrize("kind", ["t5", "marian"])
def test_attention_reads_cross_and_decoder_self_attention(kind, models, tok):
    """attention on an encoder-decoder model: the mean over heads and decoder layers of the
    cross-attention (source side) and the decoder self-attention (target side) at the predicting
    position, as the model returns them with eager attention; the model's SDPA is restored after."""
    hf = models[kind]
    seq = _wrapped(models, tok, kind).attribute(SOURCE, TARGET, method="attention", attribute_prefix=True).sequences[0]
    assert hf.config._attn_implementation == "sdpa"
    src, dec = tok(SOURCE)["input_ids"], _decoder_ids(hf, tok)
    hf.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            out = hf(input_ids=torch.tensor([src]), decoder_input_ids=torch.tensor([dec[:-1]]), output_attentions=True)
    finally:
        hf.set_attn_implementation("sdpa")
    cross = torch.stack(out.cross_attentions)[:, 0].mean(1).mean(0)  # query, source
    own = torch.stack(out.decoder_attentions)[:, 0].mean(1).mean(0)  # query, target prefix
    assert torch.allclose(seq.source_scores, cross, atol=1e-5 * float(cross.abs().max()), rtol=0)  # other kernels
    t = own.shape[0]
    assert torch.allclose(seq.target_scores[:, :t].tril(), own, atol=1e-5 * float(own.abs().max()), rtol=0)


def test_generated_attribution_and_step_scores(models, tok):
    """A generated target (no continuation) is attributed, with teacher-forced step scores that match
    the model's own probabilities."""
    model = _wrapped(models, tok, "bart")
    out = model.attribute(SOURCE, max_new_tokens=4, step_scores=["probability"])
    seq = out.sequences[0]
    dec = seq.input_ids[seq.source_length :]
    with torch.no_grad():
        logits = models["bart"](input_ids=seq.input_ids[None, : seq.source_length], decoder_input_ids=dec[None]).logits
    probs = torch.softmax(logits[0, :-1], -1).gather(-1, dec[1:, None])[:, 0]
    assert seq.num_steps == len(dec) - 1 > 0
    assert torch.allclose(seq.step_scores["probability"], probs, atol=1e-5 * float(probs.abs().max()), rtol=0)
    assert out.provenance.model_class == "BartForConditionalGeneration"


def test_save_load_round_trip_keeps_both_sides(models, tok, tmp_path):
    out = _wrapped(models, tok, "t5").attribute(SOURCE, TARGET, method="input_x_gradient", attribute_prefix=True)
    for name in ("r.json", "r.safetensors"):
        loaded = genattrib.FeatureAttributionOutput.load(out.save(tmp_path / name) or tmp_path / name)
        a, b = out.sequences[0], loaded.sequences[0]
        assert b.source_length == a.source_length and b.token_roles == a.token_roles
        assert torch.equal(a.scores.nan_to_num(7.0), b.scores.nan_to_num(7.0))


def test_word_aggregation_never_joins_the_two_sides(models, tok):
    out = _wrapped(models, tok, "t5").attribute("Paris", "Paris", attribute_prefix=True, attribute_special_tokens=True)
    seq = out.sequences[0]
    words = out.aggregate("words").sequences[0]
    assert words.source_length is not None
    assert "".join(words.tokens[: words.source_length]) == "".join(seq.tokens[: seq.source_length])
    assert "".join(words.tokens[words.source_length :]) == "".join(seq.tokens[seq.source_length :])
    assert words.source_length < seq.source_length  # "Par" + "is" became one word on the source side


def _console_text(out) -> str:
    console = Console(record=True, width=120, file=io.StringIO())
    out.show(console=console)
    return console.export_text()


def test_console_view_heads_the_two_sides(models, tok):
    model = _wrapped(models, tok, "marian")
    both = _console_text(model.attribute(SOURCE, TARGET, attribute_prefix=True))
    assert both.index("source") < both.index("target prefix")
    assert "target prefix" not in _console_text(model.attribute(SOURCE, TARGET))


def test_html_page_has_a_panel_per_side(models, tok):
    out = _wrapped(models, tok, "t5").attribute('Numbers like <b> & "quotes"', TARGET, attribute_prefix=True)
    page = out.to_html()
    s = out.sequences[0].source_length
    assert f'[[0,"source"],[{s},"target"]]' in page.replace(" ", "")
    assert "ga-panel-" in page and "<b>" not in page.split("<script")[0].split("</style>")[-1]


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        (dict(method="rpi"), "method"),
    ],
)
def test_unsupported_features_are_refused_before_any_work(kwargs, argument, models, tok, monkeypatch):
    model = _wrapped(models, tok, "t5")
    monkeypatch.setattr(type(models["t5"]), "generate", lambda *a, **k: pytest.fail("generated"))
    with pytest.raises(genattrib.InvalidArgumentError) as info:
        model.attribute(SOURCE, TARGET, **kwargs)
    assert info.value.argument == argument and "encoder-decoder" in str(info.value)


def test_inseqs_attribute_target_is_attribute_prefix(models, tok):
    """Inseq's ``attribute_target=True`` on an encoder-decoder model attributes the target prefix,
    like ``attribute_prefix=True``, with a warning naming genattrib's argument."""
    model = _wrapped(models, tok, "bart")
    ours = model.attribute(SOURCE, TARGET, method="saliency", attribute_prefix=True).sequences[0]
    with pytest.warns(FutureWarning, match="attribute_prefix"):
        theirs = model.attribute(SOURCE, TARGET, method="saliency", attribute_target=True).sequences[0]
    assert torch.equal(ours.scores.nan_to_num(7.0), theirs.scores.nan_to_num(7.0))
    assert torch.isfinite(theirs.target_scores[-1, :-1]).all()
    with pytest.raises(genattrib.InvalidArgumentError) as info:
        model.attribute(SOURCE, TARGET, attribute_prefix=True, attribute_target=True)
    assert info.value.argument == "attribute_target"


def test_attribute_prefix_false_is_refused_on_a_decoder_only_model(tiny_llama):
    with pytest.raises(genattrib.InvalidArgumentError) as info:
        tiny_llama.attribute("The capital", " of", attribute_prefix=False)
    assert info.value.argument == "attribute_prefix"


WORDS = ["The", "capital", "of", "France", "is", "Paris", "quick", "fox", "dog", "time"]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sources=st.lists(st.lists(st.sampled_from(WORDS), min_size=1, max_size=5), min_size=2, max_size=3),
    target=st.lists(st.sampled_from(WORDS), min_size=1, max_size=3),
)
def test_a_batch_equals_its_sequences_one_at_a_time(sources, target, models, tok):
    """Several sources in one call give each sequence the scores it gets alone (bit for bit: the
    engine runs the same rows)."""
    model = _wrapped(models, tok, "t5")
    texts, forced = [" ".join(s) for s in sources], " ".join(target)
    batch = model.attribute(texts, [forced] * len(texts), method="input_x_gradient", attribute_prefix=True)
    for text, seq in zip(texts, batch.sequences):
        alone = model.attribute(text, forced, method="input_x_gradient", attribute_prefix=True).sequences[0]
        assert seq.tokens == alone.tokens
        assert torch.equal(seq.scores.nan_to_num(7.0), alone.scores.nan_to_num(7.0))


def test_dataset_runner_gives_each_record_its_scores(models, tok, tmp_path):
    """attribute_dataset on an encoder-decoder model: every record's shard holds the scores of a
    call on that record alone, with its two sides."""
    model = _wrapped(models, tok, "marian")
    records = [
        {"prompt": SOURCE, "target": TARGET},
        {"prompt": "A quick brown fox", "target": "the dog"},
        {"prompt": "Once upon a time", "target": "there was"},
    ]
    run = genattrib.attribute_dataset(
        model, records, tmp_path, method="input_x_gradient", batch_size=2, attribute_prefix=True
    )
    assert run.done == 3 and run.failed == 0
    loaded = {tuple(seq.tokens): seq for seq in genattrib.FeatureAttributionOutput.load(tmp_path).sequences}
    for record in records:
        alone = model.attribute(record["prompt"], record["target"], method="input_x_gradient", attribute_prefix=True)
        seq = loaded[tuple(alone.sequences[0].tokens)]
        assert seq.source_length == alone.sequences[0].source_length
        assert torch.equal(seq.scores.nan_to_num(7.0), alone.sequences[0].scores.nan_to_num(7.0))


def test_sampling_is_seeded_and_beams_run(models, tok):
    model = _wrapped(models, tok, "t5")
    runs = [model.attribute(SOURCE, max_new_tokens=3, do_sample=True, seed=3).sequences[0].tokens for _ in range(2)]
    assert runs[0] == runs[1]
    beams = model.attribute(SOURCE, max_new_tokens=3, num_beams=2).sequences[0]
    assert 0 < beams.num_steps <= 3 and torch.isfinite(beams.source_scores[:, :-1]).all()


TWO_SENTENCES = "The capital of France is Paris. The capital of Italy is Rome."


def test_sentence_units_on_the_target(models, tok):
    """explain="sentences": each row explains one target sentence (its log-probs summed) from the
    source and the target prefix before it; IG's scores still add up to F(x) - F(x')."""
    model = _wrapped(models, tok, "marian")
    out = model.attribute(
        TWO_SENTENCES,
        "Paris is the capital. Rome is too.",
        method="integrated_gradients",
        explain="sentences",
        attribute_prefix=True,
        n_steps=64,
    )
    seq = out.sequences[0]
    s = seq.source_length
    assert len(seq.target_spans) == 2 and seq.target_spans[0][0] == s + 1
    assert "".join(seq.tokens[slice(*seq.target_spans[0])]).strip() == "Paris is the capital."
    totals = seq.scores.nansum(-1)
    assert float(seq.step_scores["completeness_error"].abs().max()) <= 2e-3 * max(1.0, float(totals.abs().max()))
    start = seq.target_spans[1][0]
    assert torch.isfinite(seq.scores[1, s + 1 : start]).all()  # the first sentence is the second row's prefix


def test_source_sentence_units_are_ablated_whole(models, tok):
    """sources="sentences" groups the source into its sentences; occlusion ablates each whole, so
    every position of a unit carries the unit's score, and the target prefix stays NaN."""
    model = _wrapped(models, tok, "marian")
    seq = model.attribute(TWO_SENTENCES, "Paris is", method="occlusion", sources="sentences").sequences[0]
    assert len(seq.source_spans) == 2 and seq.source_spans[1][1] <= seq.source_length
    for a, b in seq.source_spans:
        unit = seq.scores[:, a:b]
        assert torch.equal(unit, unit[:, :1].expand_as(unit))
    assert not torch.equal(seq.scores[:, seq.source_spans[0][0]], seq.scores[:, seq.source_spans[1][0]])
    assert torch.isnan(seq.target_scores).all()
