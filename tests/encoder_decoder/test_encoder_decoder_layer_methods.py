"""DeepLIFT and the layer methods on encoder-decoder models, against references computed here from
the model by token ids (each side's baseline is its own token embedding of the baseline id):
at the embeddings (both sides), at an encoder block (source positions) and at a decoder block
(target-prefix positions), and the ``layer=`` refusals."""

from __future__ import annotations

import pytest
import torch
from tiny_seq2seq import make_seq2seq_model

import genattrib

SOURCE = "The capital of France is"
TARGET = "Paris is"
EVERY = dict(attribute_special_tokens=True)  # every position moves to the baseline (none held fixed)


@pytest.fixture(scope="module")
def models(tok):
    return {kind: make_seq2seq_model(kind, tok) for kind in ("t5", "bart", "marian", "m2m100")}


def _ids(model, tok) -> tuple[list[int], list[int]]:
    """The source's ids and the decoder's (start token, then the target)."""
    return tok(SOURCE)["input_ids"], [model.config.decoder_start_token_id, *tok(text_target=TARGET)["input_ids"]]


def _run(model, src: list[int], dec: list[int], targets: list[int], name: str | None = None, value=None):
    """(log p of each of ``targets``, the decoder run on ``dec``, and the output of module ``name`` as
    a leaf), with that output replaced by ``value`` if given (a block's tuple output: its first tensor)."""
    leaf: dict[str, torch.Tensor] = {}

    def hook(_module, _args, out):
        first = out[0] if isinstance(out, tuple) else out
        h = (first if value is None else value).detach().clone().requires_grad_(True)
        leaf["h"] = h
        return (h, *out[1:]) if isinstance(out, tuple) else h

    handle = model.get_submodule(name).register_forward_hook(hook) if name else None
    try:
        logits = model(input_ids=torch.tensor([src]), decoder_input_ids=torch.tensor([dec])).logits[0]
    finally:
        if handle is not None:
            handle.remove()
    logp = torch.log_softmax(logits[:-1], -1).gather(-1, torch.tensor(targets)[:, None])[:, 0]
    return logp, leaf.get("h")


def _baseline_ids(src: list[int], dec: list[int], base: int, prefix: bool) -> tuple[list[int], list[int]]:
    """The baseline row by token ids: the source (and, with ``prefix``, the target prefix) set to ``base``."""
    return [base] * len(src), ([base] * len(dec) if prefix else dec)


def _totals(seq) -> torch.Tensor:
    return seq.scores.nansum(-1)


def _close(got: torch.Tensor, want: torch.Tensor, rel: float = 1e-4, scale: float | None = None) -> None:
    """``|got - want| <= rel * scale`` (``scale``: the largest ``|want|`` unless given)."""
    got, want = got.detach(), want.detach()
    scale = max(1e-6, float(want.abs().max())) if scale is None else scale
    assert float((got - want).abs().max()) <= rel * scale, (got, want)


def _log_scale(*values: torch.Tensor) -> float:
    """The scale of a difference of log-probs (float32 noise is relative to the log-probs, not their gap)."""
    return max(1.0, *(float(v.abs().max()) for v in values))


@pytest.mark.parametrize("kind", ["t5", "bart", "marian", "m2m100"])
@pytest.mark.parametrize("prefix", [True, False])
def test_deeplift_completeness_error_is_the_real_gap(kind, prefix, models, tok):
    """deeplift's completeness_error is sum(scores) - (F(x) - F(x')) with F(x) and F(x') (the source, and
    with attribute_prefix the target prefix, set to the UNK id) computed from the model by token ids;
    baseline_value is F(x'). A source-only result leaves the prefix NaN."""
    hf, unk = models[kind], tok.unk_token_id
    seq = (
        genattrib.load_model((hf, tok))
        .attribute(SOURCE, TARGET, method="deeplift", baseline=unk, attribute_prefix=prefix, **EVERY)
        .sequences[0]
    )
    src, dec = _ids(hf, tok)
    with torch.no_grad():
        f_input = _run(hf, src, dec, dec[1:])[0]
        f_base = _run(hf, *_baseline_ids(src, dec, unk, prefix), dec[1:])[0]
    _close(seq.step_scores["baseline_value"], f_base)
    error = seq.step_scores["completeness_error"]
    _close(error, _totals(seq) - (f_input - f_base), 1e-5, _log_scale(f_input, f_base))
    assert float(seq.source_scores.abs().sum()) > 0 and torch.isfinite(seq.source_scores).all()
    if prefix:
        assert torch.isfinite(seq.target_scores[-1, :-1]).all() and float(seq.target_scores[-1, :-1].abs().sum()) > 0
    else:
        assert torch.isnan(seq.target_scores).all()


@pytest.mark.parametrize("kind", ["t5", "bart"])
@pytest.mark.parametrize("prefix", [True, False])
def test_layer_methods_at_the_embeddings(kind, prefix, models, tok):
    """At the embeddings (the default layer): layer_integrated_gradients is integrated_gradients with that
    baseline id (each side's own embedding of it) and its completeness_error is the real gap from the model;
    layer_deeplift is deeplift; layer_gradient_x_activation is gradient x embedding from torch.autograd on
    the model (both sides)."""
    hf, unk = models[kind], tok.unk_token_id
    model = genattrib.load_model((hf, tok))
    common = dict(attribute_prefix=prefix, **EVERY)

    def run(method: str, **kwargs):
        return model.attribute(SOURCE, TARGET, method=method, **common, **kwargs).sequences[0]

    lig, ig = (run(m, baseline=unk, n_steps=32) for m in ("layer_integrated_gradients", "integrated_gradients"))
    assert torch.equal(lig.scores.nan_to_num(7.0), ig.scores.nan_to_num(7.0))
    src, dec = _ids(hf, tok)
    with torch.no_grad():
        f_input, f_base = _run(hf, src, dec, dec[1:])[0], _run(hf, *_baseline_ids(src, dec, unk, prefix), dec[1:])[0]
    _close(lig.step_scores["completeness_error"], _totals(lig) - (f_input - f_base), 1e-5, _log_scale(f_input, f_base))
    dl, ldl = run("deeplift", baseline=unk), run("layer_deeplift", baseline=unk, layer="embeddings")
    assert torch.equal(dl.scores.nan_to_num(7.0), ldl.scores.nan_to_num(7.0))
    gxa = run("layer_gradient_x_activation")
    s = len(src)
    for j in range(len(dec) - 1):
        e_src = hf.get_encoder().embed_tokens(torch.tensor([src])).detach().requires_grad_(True)
        e_dec = hf.get_decoder().embed_tokens(torch.tensor([dec[: j + 1]])).detach().requires_grad_(True)
        value = torch.log_softmax(hf(inputs_embeds=e_src, decoder_inputs_embeds=e_dec).logits[0, -1], -1)[dec[j + 1]]
        g_src, g_dec = torch.autograd.grad(value, (e_src, e_dec))
        _close(gxa.scores[j, :s], (g_src * e_src).sum(-1)[0], 1e-5)
        if prefix:
            _close(gxa.scores[j, s : s + j + 1], (g_dec * e_dec).sum(-1)[0], 1e-5)
        else:
            assert torch.isnan(gxa.scores[j, s:]).all()


BLOCKS = {  # (the shorthand, the block's module name)
    # T5's last blocks feed an RMSNorm, which is scale-invariant: their gradient x activation sums to ~0
    "t5": [("encoder.0", "encoder.block.0"), ("decoder.-2", "decoder.block.0")],
    "bart": [("encoder.0", "model.encoder.layers.0"), ("decoder.1", "model.decoder.layers.1")],
}


@pytest.mark.parametrize("kind", ["t5", "bart"])
@pytest.mark.parametrize("which", [0, 1])
def test_layer_gradient_x_activation_at_a_block(kind, which, models, tok):
    """At an encoder block the scores are (dF/dh * h) summed over hidden at each source position, at a
    decoder block at each target-prefix position, h and the gradient read by a hook on the model run
    from token ids; the other side is NaN (not scored); the shorthand and the module name agree."""
    hf = models[kind]
    model = genattrib.load_model((hf, tok))
    short, name = BLOCKS[kind][which]
    seq = model.attribute(SOURCE, TARGET, method="layer_gradient_x_activation", layer=short, attribute_prefix=True)
    seq = seq.sequences[0]
    by_name = model.attribute(SOURCE, TARGET, method="layer_gradient_x_activation", layer=name, attribute_prefix=True)
    assert torch.equal(seq.scores.nan_to_num(7.0), by_name.sequences[0].scores.nan_to_num(7.0))
    src, dec = _ids(hf, tok)
    s = len(src)
    logp, h = _run(hf, src, dec, dec[1:], name)
    for j in range(len(dec) - 1):
        (grad,) = torch.autograd.grad(logp[j], h, retain_graph=True)
        want = (grad * h).sum(-1)[0].detach()
        if which == 0:  # encoder: every source position, no target side
            _close(seq.scores[j, :s], want, 1e-4)
            assert torch.isnan(seq.scores[j, s:]).all()
        else:
            _close(seq.scores[j, s : s + j + 1], want[: j + 1], 1e-4)
            assert torch.isnan(seq.scores[j, :s]).all()


@pytest.mark.parametrize("kind", ["t5", "bart"])
@pytest.mark.parametrize("which", [0, 1])
def test_layer_integrated_gradients_at_a_block_is_complete(kind, which, models, tok):
    """Layer IG at a block: the scores add up to F(x) - F(x; a'), a' the block's output on the UNK
    baseline and F(x; a') the model run on x with the block's output set to a' (both by hooks here);
    completeness_error is that gap and small with 64 steps; layer_deeplift's baseline_value is F(x')."""
    hf, unk = models[kind], tok.unk_token_id
    model = genattrib.load_model((hf, tok))
    short, name = BLOCKS[kind][which]
    seq = model.attribute(
        SOURCE, TARGET, method="layer_integrated_gradients", layer=short, baseline=unk, n_steps=64,
        attribute_prefix=True, **EVERY,
    ).sequences[0]  # fmt: skip
    src, dec = _ids(hf, tok)
    base = _baseline_ids(src, dec, unk, True)
    with torch.no_grad():
        f_input = _run(hf, src, dec, dec[1:])[0]
        f_base_row = _run(hf, *base, dec[1:])[0]
        a_base = _run(hf, *base, dec[1:], name)[1]
        f_patched = _run(hf, src, dec, dec[1:], name, a_base)[0]
    gap = f_input - f_patched
    _close(seq.step_scores["baseline_value"], f_patched)
    _close(seq.step_scores["completeness_error"], _totals(seq) - gap, 1e-5, _log_scale(f_input, f_patched))
    assert float(seq.step_scores["completeness_error"].abs().max()) <= 2e-2 * max(1.0, float(gap.abs().max()))
    dl = model.attribute(
        SOURCE, TARGET, method="layer_deeplift", layer=short, baseline=unk, attribute_prefix=True, **EVERY
    )
    _close(dl.sequences[0].step_scores["baseline_value"], f_base_row)


@pytest.mark.parametrize(
    ("layer", "argument", "words"),
    [
        (1, "layer", "'encoder.1' or 'decoder.1'"),
        ("encoder.2", "layer", "out of range"),
        ("decoder.x", "layer", "no module named"),
        ("lm_head", "layer", "neither the encoder"),
        ("model.encoder.embed_tokens", "layer", "'embeddings'"),
        ("model.decoder.layers.0.encoder_attn.v_proj", "layer", "cross-attention"),
        ("model.decoder.layers.0", "attribute_prefix", "attribute_prefix=True"),
    ],
)
@pytest.mark.parametrize("method", ["layer_integrated_gradients", "layer_deeplift", "layer_gradient_x_activation"])
def test_bad_layers_are_refused_before_any_work(layer, argument, words, method, models, tok, monkeypatch):
    """A bare block index (which stack?), an unknown or out-of-range block, a module outside both stacks,
    one side's token embedding, a cross-attention key/value projection (source positions in the decoder)
    and a decoder layer without attribute_prefix=True are refused up front."""
    hf = models["bart"]
    monkeypatch.setattr(type(hf), "generate", lambda *a, **k: pytest.fail("generated"))
    model = genattrib.load_model((hf, tok))
    with pytest.raises(genattrib.InvalidArgumentError) as info:
        model.attribute(SOURCE, TARGET, method=method, layer=layer)
    assert info.value.argument == argument and words in str(info.value)
