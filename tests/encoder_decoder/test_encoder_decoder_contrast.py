"""Contrast on encoder-decoder models: contrast targets, contrastive inputs (a contrast *source*
through the encoder, a contrast *target*), checked against the model's own logits; top-k scores and
streaming; attribute-context (PECoRe) with the input context in the source and the output context in
the target prefix, by hand and on the command line."""

from __future__ import annotations

import pytest
import torch
from tiny_seq2seq import make_seq2seq_model
from tolerance import TINY_MODEL, assert_close_to_scale

import genattrib
from genattrib.cli import main

SOURCE = "The capital of France is"
TARGET = "Paris is"
CONTRAST_SOURCE = "The capital of Italy is often said to be"  # longer: its own source length
CONTRAST_TARGET = "the capital Rome is"  # longer: aligned from the end


@pytest.fixture(scope="module")
def t5(tok):
    return genattrib.load_model((make_seq2seq_model("t5", tok), tok))


@pytest.fixture(scope="module")
def bart(tok):
    return genattrib.load_model((make_seq2seq_model("bart", tok), tok))


def _log_probs(model, source: str, target_ids: list[int]) -> torch.Tensor:
    """log P(· | source, target prefix) at every target step, from the HF model (decoder start first)."""
    hf = model.model
    decoder = [hf.config.decoder_start_token_id, *target_ids[:-1]]
    with torch.no_grad():
        logits = hf(input_ids=torch.tensor([model.tokenizer(source)["input_ids"]]),
                    decoder_input_ids=torch.tensor([decoder])).logits[0]  # fmt: skip
    return logits.double().log_softmax(-1)


def test_contrast_source_and_target_step_scores_by_hand(t5, tok):
    """contrast_prob, kl_divergence and pcxmi with a contrast source (its own length, through the
    encoder) and a longer contrast target, against two plain forwards of the HF model."""
    out = t5.attribute(
        SOURCE, TARGET, method="saliency", contrast_prompt=CONTRAST_SOURCE, contrast_continuation=CONTRAST_TARGET,
        step_scores=["contrast_prob", "kl_divergence", "pcxmi"],
    )  # fmt: skip
    target, contrast = tok(text_target=TARGET)["input_ids"], tok(text_target=CONTRAST_TARGET)["input_ids"]
    n = len(target)
    p = _log_probs(t5, SOURCE, target)
    q = _log_probs(t5, CONTRAST_SOURCE, contrast)[-n:]  # the last n steps of the contrast target
    c = torch.tensor(contrast[-n:])
    y = torch.tensor(target)
    expected = {
        "contrast_prob": q.exp()[range(n), c],
        "kl_divergence": (p.exp() * (p - q)).sum(-1),
        "pcxmi": -(p[range(n), y] - q[range(n), c]) / torch.log(torch.tensor(2.0, dtype=torch.float64)),
    }
    steps = out.sequences[0].step_scores
    for name, want in expected.items():
        assert_close_to_scale(steps[name], want.float(), floor=TINY_MODEL, what=name)
    wrong_side = _log_probs(t5, SOURCE, contrast)[-n:]  # the contrast target read under the real source
    assert not torch.allclose(steps["contrast_prob"].double(), wrong_side.exp()[range(n), c], rtol=1e-3)


def test_contrast_target_and_attributed_contrast_functions(bart, tok):
    """contrast_target= (tokens read under the real input) on BART; an attributed contrast function with
    contrast_force_inputs=True differs from probability by a constant, so occlusion scores are the same."""
    target = tok(text_target=TARGET)["input_ids"]
    contrast = torch.tensor(target).roll(1)  # other tokens, as many
    out = bart.attribute(SOURCE, TARGET, method="saliency", contrast_target=contrast, step_scores=["contrast_prob"])
    p = _log_probs(bart, SOURCE, target).exp()[range(len(target)), contrast]
    assert_close_to_scale(out.sequences[0].step_scores["contrast_prob"], p.float(), floor=TINY_MODEL, what="p(c)")
    common = dict(method="occlusion", attribute_prefix=True)
    forced = bart.attribute(
        SOURCE, TARGET, attributed_fn="contrast_prob_diff", contrast_prompt=CONTRAST_SOURCE,
        contrast_force_inputs=True, **common,
    ).sequences[0]  # fmt: skip
    plain = bart.attribute(SOURCE, TARGET, attributed_fn="probability", **common).sequences[0]
    assert_close_to_scale(forced.scores, plain.scores, floor=TINY_MODEL, what="occlusion")
    assert forced.token_roles == plain.token_roles and torch.isfinite(forced.target_scores[-1, :-1]).all()


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        (dict(contrast_continuation="Rome"), "contrast_continuation"),  # shorter than the target
        (dict(contrast_prompt=[{"role": "user", "content": "x"}]), "contrast_prompt"),
    ],
)
def test_bad_contrast_inputs_are_refused(t5, kwargs, argument):
    with pytest.raises(genattrib.InvalidArgumentError) as info:
        t5.attribute(SOURCE, TARGET, step_scores=["kl_divergence"], **kwargs)
    assert info.value.argument == argument


def test_top_k_and_stream_keep_the_sides(t5, tmp_path):
    """top_k_scores= keeps the k largest source scores (the held-fixed prefix stays NaN, never a top-k
    cell); stream_to= writes rows that reload with their sides, and a second call resumes them all."""
    dense = t5.attribute(SOURCE, TARGET, method="saliency").sequences[0]
    top = t5.attribute(SOURCE, TARGET, method="saliency", top_k_scores=2).sequences[0]
    assert top.token_roles == dense.token_roles
    kept = top.scores.to_dense() if hasattr(top.scores, "to_dense") else torch.as_tensor(top.scores)
    s = dense.source_length
    for row in range(dense.scores.shape[0]):
        best = dense.scores[row, :s].abs().topk(2).indices
        assert torch.equal(kept[row, best], dense.scores[row, best])
        assert kept[row, s:].isnan().all()
    folder = tmp_path / "rows"
    streamed = t5.attribute(SOURCE, TARGET, method="saliency", stream_to=folder)
    again = t5.attribute(SOURCE, TARGET, method="saliency", stream_to=folder)
    assert again.provenance.work["resumed_rows"] == dense.scores.shape[0]
    for out in (streamed, again, genattrib.FeatureAttributionOutput.load(folder)):
        seq = out.sequences[0]
        assert seq.token_roles == dense.token_roles and seq.source_length == s
        assert torch.equal(torch.as_tensor(seq.scores).nan_to_num(7.0), dense.scores.nan_to_num(7.0))


def test_dataset_runner_streams_rows(t5, tmp_path):
    """attribute_dataset(stream_to=) on an encoder-decoder model: each record's shard holds the scores
    and sides of a call on that record alone."""
    records = [{"prompt": SOURCE, "target": TARGET}, {"prompt": "A quick brown fox", "target": "the dog"}]
    run = genattrib.attribute_dataset(
        t5, records, tmp_path / "out", method="saliency", batch_size=2, stream_to=tmp_path / "rows"
    )
    assert run.done == 2 and run.failed == 0
    loaded = {tuple(s.tokens): s for s in genattrib.FeatureAttributionOutput.load(tmp_path / "out").sequences}
    for record in records:
        alone = t5.attribute(record["prompt"], record["target"], method="saliency").sequences[0]
        seq = loaded[tuple(alone.tokens)]
        assert seq.token_roles == alone.token_roles
        assert torch.equal(torch.as_tensor(seq.scores).nan_to_num(7.0), alone.scores.nan_to_num(7.0))


CONTEXT = "France is in Europe."
CURRENT = "The capital of France is"
OUTPUT = "Paris is"
OUTPUT_CONTEXT = "Yes ."


def test_attribute_context_sides_by_hand(t5, tok):
    """Step one: KL between the target under the contextless source and under context + source with the
    output context in the target prefix; step two: the cues are the source's context tokens and the
    target's output-context tokens of a contrastive attribution with attribute_prefix=True."""
    out = genattrib.attribute_context(
        t5, CURRENT, input_context_text=CONTEXT, output_current_text=OUTPUT, output_context_text=OUTPUT_CONTEXT,
        method="saliency", context_sensitivity_std_threshold=None, context_sensitivity_topk=2,
    )  # fmt: skip
    current = tok(text_target=OUTPUT)["input_ids"]
    full = tok(text_target=f"{OUTPUT_CONTEXT} {OUTPUT}")["input_ids"]
    n = len(current) - 1  # the closing </s> is no candidate
    p = _log_probs(t5, CURRENT, current)[:n]
    q = _log_probs(t5, f"{CONTEXT} {CURRENT}", full)[-len(current) : -1]
    assert_close_to_scale(out.sensitivity_scores, (p.exp() * (p - q)).sum(-1).float(), floor=TINY_MODEL, what="KL")
    n_context, n_out = len(tok(CONTEXT, add_special_tokens=False)["input_ids"]), len(full) - len(current)
    assert len(out.input_context_tokens) == n_context and len(out.output_context_tokens) == n_out
    assert len(out.cues) == 2
    for cue in out.cues:
        assert len(cue.input_context_scores) == n_context and len(cue.output_context_scores) == n_out
        assert all(v == v for v in cue.output_context_scores)  # the prefix is attributed: no NaN


def test_attribute_context_command_line_on_a_seq2seq_folder(t5, tmp_path, capsys):
    folder = tmp_path / "t5"
    t5.model.save_pretrained(folder)
    t5.tokenizer.save_pretrained(folder)
    args = [
        "attribute-context", "--model", str(folder), "--input-current-text", CURRENT,
        "--input-context-text", CONTEXT, "--output-current-text", OUTPUT, "--method", "saliency",
    ]  # fmt: skip
    assert main(args) == 0
    assert "Context-sensitive tokens (kl_divergence" in capsys.readouterr().out


@pytest.mark.parametrize("method", ["saliency", "occlusion"])
def test_estimate_plans_the_rows_attribute_runs(t5, method):
    """estimate() on an encoder-decoder model: its planned rows are the rows attribute() runs."""
    est = t5.estimate(SOURCE, TARGET, method=method, calibrate=False, max_rows=2, attribute_prefix=True)
    out = t5.attribute(SOURCE, TARGET, method=method, max_rows=2, attribute_prefix=True)
    assert est.rows == out.sequences[0].num_steps and est.sequences == 1
    if method == "occlusion":  # as on decoder-only models (tests/models/test_estimate.py): close, not exact
        assert est.model_rows == pytest.approx(out.provenance.work["rows"], rel=0.1)
        return
    assert est.model_rows == out.provenance.work["rows"]
    timed = t5.estimate([SOURCE, CONTRAST_SOURCE], method=method, max_new_tokens=3)
    assert timed.predicted_seconds > 0 and timed.rows == 6 and "generation" in timed.seconds
