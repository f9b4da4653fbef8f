"""layer_integrated_gradients: at the embeddings with a token-id baseline it is integrated
gradients with that token's embedding; at a hidden block the scores add up to F(x) - F(x')."""

from __future__ import annotations

import pytest
import torch

from genattrib.errors import InvalidArgumentError

pytestmark = pytest.mark.numeric

PROMPT, TARGET = "The capital of France is", " Paris. The"


@pytest.mark.parametrize("baseline", [None, "pad", 5])
def test_embedding_layer_is_integrated_gradients_with_the_token_baseline(tiny_model, baseline):
    kwargs = dict(target=TARGET, n_steps=6, baseline=baseline)
    a = tiny_model.attribute(PROMPT, method="layer_integrated_gradients", **kwargs).sequences[0]
    b = tiny_model.attribute(PROMPT, method="integrated_gradients", **kwargs).sequences[0]
    assert torch.equal(a.scores.nan_to_num(7.0), b.scores.nan_to_num(7.0))
    assert torch.equal(a.step_scores["completeness_error"], b.step_scores["completeness_error"])


@pytest.mark.parametrize("layer", [0, 1, "model.layers.1.mlp"])
def test_hidden_layer_scores_are_complete(tiny_llama, layer):
    seq = tiny_llama.attribute(
        PROMPT, target=TARGET, method="layer_integrated_gradients", layer=layer, n_steps=64, step_scores=["probability"]
    ).sequences[0]
    delta = seq.step_scores["probability"].log() - seq.step_scores["baseline_value"]
    error = seq.step_scores["completeness_error"]
    assert delta.abs().max() > 1e-4
    assert torch.allclose(seq.scores.nan_to_num(0).sum(-1) - delta, error, atol=1e-4)
    assert (error.abs() <= 1e-3 * delta.abs().clamp(min=1e-2)).all(), (error, delta)


def test_bad_baseline_id_is_refused_before_work(tiny_llama):
    with pytest.raises(InvalidArgumentError) as error:
        tiny_llama.attribute(PROMPT, target=TARGET, method="layer_integrated_gradients", baseline=10**9, layer=1)
    assert error.value.argument == "baseline"


def test_auto_steps_only_at_the_embeddings(tiny_llama):
    with pytest.raises(InvalidArgumentError) as error:
        tiny_llama.attribute(PROMPT, target=TARGET, method="layer_integrated_gradients", n_steps="auto", layer=1)
    assert error.value.argument == "n_steps"
