"""The model hook of the method contract (genattrib/engine/model_hooks.py): rules applied by module
class for one block, every change undone on exit, also when the block raises."""

from __future__ import annotations

import pytest
import torch
from transformers.models.llama.modeling_llama import LlamaAttention, LlamaMLP

from genattrib.engine.attention_capture import AttentionProbe, AttentionRouting
from genattrib.engine.model_hooks import (
    CaptureOutputs,
    GradientRule,
    ReplaceForward,
    ReplaceOutput,
    ScaleGradient,
    hooked,
    matched_modules,
)
from genattrib.errors import InvalidArgumentError

IDS = torch.tensor([[5, 9, 14, 3, 27]])


def _state(model: torch.nn.Module) -> list:
    return [
        (name, tuple(m._forward_hooks), tuple(m._forward_pre_hooks), "forward" in m.__dict__)
        for name, m in model.named_modules()
    ] + [model.config._attn_implementation]


def _logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(IDS).logits


def test_capture_records_each_matched_module(tiny_llama):
    model = tiny_llama.model
    capture = CaptureOutputs()
    with hooked(model, {LlamaMLP: capture}):
        _logits(model)
    layers = model.config.num_hidden_layers
    assert sorted(capture.outputs) == [f"model.layers.{i}.mlp" for i in range(layers)]
    assert capture.outputs["model.layers.0.mlp"].shape == (1, IDS.shape[1], model.config.hidden_size)


def test_zeroed_value_vectors_change_the_output_only_inside_the_block(tiny_llama):
    model = tiny_llama.model
    before, state = _logits(model), _state(model)
    keep = torch.ones(1, IDS.shape[1], 1)
    keep[0, 1] = 0.0  # value vectors of position 1 zeroed: no query reads anything from it

    def zero(module, values):
        return values * keep

    with hooked(model, {type(model.model.layers[0].self_attn.v_proj): ReplaceOutput(zero)}):
        zeroed = _logits(model)
    assert not torch.allclose(zeroed[0, 2:], before[0, 2:])
    assert torch.equal(_logits(model), before) and _state(model) == state


def test_everything_is_restored_when_the_block_raises(tiny_llama):
    model = tiny_llama.model
    state, before = _state(model), _logits(model)
    forward = ReplaceForward(lambda original, *args, **kwargs: original(*args, **kwargs) * 0)
    with pytest.raises(RuntimeError, match="inside"):
        with hooked(model, {LlamaMLP: forward, LlamaAttention: CaptureOutputs()}, AttentionRouting(AttentionProbe())):
            assert model.config._attn_implementation.startswith("genattrib_probe_")
            raise RuntimeError("inside")
    assert _state(model) == state and torch.equal(_logits(model), before)


def test_a_gradient_rule_changes_gradients_not_values(tiny_llama):
    model = tiny_llama.model
    embeds = model.get_input_embeddings()(IDS).detach()

    def value_and_grad(*hooks):
        leaf = embeds.clone().requires_grad_(True)
        with hooked(model, *hooks):
            value = model(inputs_embeds=leaf).logits[0, -1].logsumexp(-1)
            (grad,) = torch.autograd.grad(value, leaf)
        return value.detach(), grad

    v0, g0 = value_and_grad()
    v1, g1 = value_and_grad({LlamaMLP: ScaleGradient(0.5)})
    v2, g2 = value_and_grad({LlamaMLP: GradientRule(lambda g: g * 0.5)})
    assert torch.equal(v0, v1) and not torch.allclose(g0, g1)
    assert torch.equal(g1, g2)


def test_the_most_specific_class_wins_and_bad_maps_are_refused(tiny_llama):
    model = tiny_llama.model
    general, specific = CaptureOutputs(), CaptureOutputs()
    found = matched_modules(model, {torch.nn.Module: general, LlamaMLP: specific})
    assert {rule is specific for name, _, rule in found if name.endswith(".mlp")} == {True}
    # a class name instead of a class: refused before anything is applied (by the run-time type
    # checker when it is on, else by hooked's own check, which names the fix)
    with pytest.raises((InvalidArgumentError, TypeError), match="LlamaMLP|family map"):
        with hooked(model, {"LlamaMLP": ScaleGradient(0.5)}):
            pass
    assert all(not m._forward_hooks for m in model.modules())
