"""layer_gradient_x_activation: the embedding layer is input × gradient; a hidden block's scores
equal a hand-written hook on the Hugging Face model; bad ``layer=`` fails before any model call."""

from __future__ import annotations

import pytest
import torch
from tolerance import TINY_MODEL, assert_close_to_scale

from genattrib.errors import InvalidArgumentError

pytestmark = pytest.mark.numeric

PROMPT, TARGET = "The capital of France is", " Paris. The"


def test_embedding_layer_is_input_x_gradient(tiny_model):
    a = tiny_model.attribute(PROMPT, target=TARGET, method="layer_gradient_x_activation").sequences[0]
    b = tiny_model.attribute(PROMPT, target=TARGET, method="input_x_gradient").sequences[0]
    assert torch.equal(a.scores.nan_to_num(7.0), b.scores.nan_to_num(7.0))


def _by_hand(am, layer: int):
    """grad × activation at block ``layer``'s output for every target, one forward+backward per target."""
    out = am.attribute(PROMPT, target=TARGET, method="saliency").sequences[0]
    ids, hf = out.input_ids, am.model
    stack = hf.model.layers if hasattr(hf, "model") else hf.transformer.h
    rows = []
    for t in range(out.prompt_length, len(ids)):
        kept = {}

        def hook(_m, _a, output, kept=kept):
            h = (output[0] if isinstance(output, tuple) else output).detach().requires_grad_(True)
            kept["h"] = h
            return (h, *output[1:]) if isinstance(output, tuple) else h

        handle = stack[layer].register_forward_hook(hook)
        try:
            logits = hf(ids[None, :t]).logits[0, -1]
        finally:
            handle.remove()
        value = torch.log_softmax(logits.float(), -1)[ids[t]]
        (grad,) = torch.autograd.grad(value, kept["h"])
        row = torch.full((len(ids),), float("nan"))
        row[:t] = (grad * kept["h"]).sum(-1)[0].detach()
        rows.append(row)
    return torch.stack(rows)


@pytest.mark.parametrize("layer", [0, -1])
def test_hidden_block_equals_a_hand_written_hook(tiny_model, layer):
    seq = tiny_model.attribute(PROMPT, target=TARGET, method="layer_gradient_x_activation", layer=layer).sequences[0]
    expected = _by_hand(tiny_model, layer)
    got = seq.scores
    mask = torch.isfinite(got) & torch.isfinite(expected) & ~seq.held_fixed.unsqueeze(0)
    assert mask.sum() > 10
    assert_close_to_scale(got[mask], expected[mask], floor=TINY_MODEL)


def _forward_calls(am):
    calls = []
    handle = am.model.register_forward_pre_hook(lambda *a: calls.append(1))
    return calls, handle


@pytest.mark.parametrize("method", ["layer_gradient_x_activation", "layer_integrated_gradients", "layer_deeplift"])
@pytest.mark.parametrize(
    ("layer", "match"), [("model.no_such_module", "no module named"), (99, "out of range"), (-99, "out of range")]
)
def test_bad_layer_fails_before_any_model_call(tiny_llama, method, layer, match):
    calls, handle = _forward_calls(tiny_llama)
    try:
        with pytest.raises(InvalidArgumentError, match=match) as error:
            tiny_llama.attribute(PROMPT, target=TARGET, method=method, layer=layer)
    finally:
        handle.remove()
    assert error.value.argument == "layer" and not calls


@pytest.mark.parametrize("layer", [1.5, True, ""])
def test_bad_layer_type_is_refused_by_name(tiny_llama, layer):
    with pytest.raises(InvalidArgumentError) as error:
        tiny_llama.attribute(PROMPT, target=TARGET, method="layer_gradient_x_activation", layer=layer)
    assert error.value.argument == "layer"


def test_module_name_reaches_a_sublayer(tiny_llama):
    seq = tiny_llama.attribute(
        PROMPT, target=TARGET, method="layer_gradient_x_activation", layer="model.layers.0.mlp"
    ).sequences[0]
    before = (
        torch.arange(seq.scores.shape[1]).unsqueeze(0)
        < torch.arange(seq.scores.shape[0]).unsqueeze(1) + len(seq.input_ids) - seq.scores.shape[0]
    )
    assert torch.isfinite(seq.scores[before]).all() and seq.scores[before].abs().sum() > 0
