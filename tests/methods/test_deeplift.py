"""DeepLIFT: the rescale rule is exact on networks whose only nonlinearity is elementwise
(completeness as a hypothesis property), is gradient × (x - x') on a linear toy, and on tiny
transformers the reported ``completeness_error`` is what it says; ``layer_deeplift`` at the
embeddings is ``deeplift``."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from genattrib.engine.model_hooks import hooked
from genattrib.errors import InvalidArgumentError
from genattrib.methods.deeplift_rules import CaptureInputs, Rescale, nonlinearity_map

pytestmark = pytest.mark.numeric

PROMPT, TARGET = "The capital of France is", " Paris. The"


def _deeplift(net: nn.Module, x: torch.Tensor, x_ref: torch.Tensor, rescale: bool = True) -> torch.Tensor:
    """(x - x') times the gradient of sum(net(x)) under the rescale rule (references from x')."""
    capture = CaptureInputs()
    with torch.no_grad(), hooked(net, nonlinearity_map(capture)):
        net(x_ref)
    leaf = x.clone().requires_grad_(True)
    with hooked(net, *([nonlinearity_map(Rescale(capture.inputs))] if rescale else [])):
        (grad,) = torch.autograd.grad(net(leaf).sum(), leaf)
    return grad * (x - x_ref)


def _toy(seed: int, act: nn.Module | None) -> nn.Module:
    torch.manual_seed(seed)
    layers = [nn.Linear(5, 7)] + ([act] if act is not None else []) + [nn.Linear(7, 1)]
    return nn.Sequential(*layers).double()


def test_linear_toy_is_gradient_times_difference():
    net = _toy(0, None)
    x, x_ref = torch.randn(3, 5, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)
    leaf = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(net(leaf).sum(), leaf)
    assert torch.allclose(_deeplift(net, x, x_ref), grad * (x - x_ref), atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 1000),
    act=st.sampled_from(["silu", "gelu", "tanh", "relu", "gelu_new"]),
    scale=st.floats(0.1, 4.0),
)
def test_rescale_rule_is_complete_on_an_elementwise_network(seed, act, scale):
    from transformers.activations import ACT2FN

    net = _toy(seed, ACT2FN[act])
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 5, generator=gen, dtype=torch.float64) * scale
    x_ref = torch.randn(4, 5, generator=gen, dtype=torch.float64) * scale
    scores = _deeplift(net, x, x_ref)
    with torch.no_grad():
        delta = (net(x) - net(x_ref)).squeeze(-1)
    assert torch.allclose(scores.sum(-1), delta, atol=1e-9, rtol=1e-9)
    if act != "relu":  # plain gradients are not complete through a curved nonlinearity
        plain = _deeplift(net, x, x_ref, rescale=False)
        assert not torch.allclose(plain.sum(-1), delta, atol=1e-6)


def test_completeness_error_is_reported_as_defined(tiny_model):
    seq = tiny_model.attribute(PROMPT, target=TARGET, method="deeplift", step_scores=["probability"]).sequences[0]
    f_x = seq.step_scores["probability"].log()
    total = seq.scores.nan_to_num(0).sum(-1)
    expected = total - (f_x - seq.step_scores["baseline_value"])
    assert torch.allclose(seq.step_scores["completeness_error"], expected, atol=1e-4, rtol=1e-4)


def test_rescale_rule_changes_the_scores_and_gradient_rule_is_gradient_times_difference(tiny_llama):
    rescale = tiny_llama.attribute(PROMPT, target=TARGET, method="deeplift").sequences[0]
    plain = tiny_llama.attribute(PROMPT, target=TARGET, method="deeplift", nonlinearity="gradient").sequences[0]
    assert not torch.allclose(rescale.scores.nan_to_num(0), plain.scores.nan_to_num(0), atol=1e-7)
    # gradient rule: (x - x') * dF/dx at x, by hand on the embeddings
    hf, ids = tiny_llama.model, plain.input_ids
    emb = hf.get_input_embeddings()
    unk = tiny_llama.tokenizer.unk_token_id
    t = len(ids) - 1
    x = emb(ids[None, :t]).detach()
    base = torch.where(plain.held_fixed[None, :t, None], x, emb(torch.full((1, t), unk)).detach())
    leaf = x.clone().requires_grad_(True)
    value = torch.log_softmax(hf(inputs_embeds=leaf).logits[0, -1].float(), -1)[ids[t]]
    (grad,) = torch.autograd.grad(value, leaf)
    expected = (grad * (x - base)).sum(-1)[0]
    got = plain.scores[-1, :t]
    keep = ~plain.held_fixed[:t]
    assert torch.allclose(got[keep], expected[keep], atol=1e-6 + 1e-4 * expected.abs().max())


def test_layer_deeplift_at_embeddings_is_deeplift(tiny_llama):
    a = tiny_llama.attribute(PROMPT, target=TARGET, method="deeplift").sequences[0]
    b = tiny_llama.attribute(PROMPT, target=TARGET, method="layer_deeplift").sequences[0]
    assert torch.equal(a.scores.nan_to_num(7.0), b.scores.nan_to_num(7.0))


def test_layer_deeplift_at_a_block_reports_its_completeness(tiny_model):
    seq = tiny_model.attribute(
        PROMPT, target=TARGET, method="layer_deeplift", layer=1, step_scores=["probability"]
    ).sequences[0]
    delta = seq.step_scores["probability"].log() - seq.step_scores["baseline_value"]
    assert torch.allclose(seq.scores.nan_to_num(0).sum(-1) - delta, seq.step_scores["completeness_error"], atol=1e-4)


@pytest.mark.parametrize(
    ("params", "argument"), [({"nonlinearity": "relu"}, "nonlinearity"), ({"baseline": 10**9}, "baseline")]
)
def test_bad_parameters_are_refused_by_name(tiny_llama, params, argument):
    with pytest.raises(InvalidArgumentError) as error:
        tiny_llama.attribute(PROMPT, target=TARGET, method="deeplift", **params)
    assert error.value.argument == argument
