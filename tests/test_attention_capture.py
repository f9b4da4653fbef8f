"""Attention capture and injection through the transformers attention-function registry."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface

from genattrib.engine.attention_capture import (
    AttentionProbe,
    attention_probe,
    capture_attentions,
    capture_layer,
)
from genattrib.engine.forward import ModelForward

PROMPT = "The capital of France is"


def _ids(am, batch=2):
    ids = am.tokenizer(
        [PROMPT + " Paris", "A quick brown fox jumps"], add_special_tokens=False, padding=True, return_tensors="pt"
    )["input_ids"]
    return ids[:batch]


def _state(model):
    configs = {
        id(c): c for c in [model.config, *(getattr(m, "config", None) for m in model.modules())] if c is not None
    }
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())
    return (
        {k: c.__dict__.get("_attn_implementation_internal") for k, c in configs.items()},
        hooks,
        set(AttentionInterface._global_mapping),
        set(AttentionMaskInterface._global_mapping),
    )


def test_capture_equals_eager_attentions(tiny_model):
    model = tiny_model.model
    assert model.config._attn_implementation == "sdpa"  # the fixtures load with SDPA: no eager needed
    forward = ModelForward(model)
    embeds = forward.embed(_ids(tiny_model))
    got = capture_attentions(forward, embeds)
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    with torch.no_grad():
        expected = torch.stack(eager(inputs_embeds=embeds, output_attentions=True).attentions)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


def test_injecting_the_captured_attention_reproduces_the_output(tiny_model):
    model = tiny_model.model
    forward = ModelForward(model)
    embeds = forward.embed(_ids(tiny_model))
    with torch.no_grad():
        original = model(inputs_embeds=embeds).logits
    for layer in range(model.config.num_hidden_layers):
        captured, _ = capture_layer(forward, embeds, layer)
        leaf = captured.clone().requires_grad_(True)
        with attention_probe(model, AttentionProbe(inject={layer: leaf})):
            logits = model(inputs_embeds=embeds).logits
        torch.testing.assert_close(logits.detach(), original, atol=1e-6, rtol=0)
        (grad,) = torch.autograd.grad(logits[:, -1].logsumexp(-1).sum(), leaf)  # autograd reaches the injected tensor
        assert grad.abs().sum() > 0


def test_probe_restores_everything_even_when_the_body_raises(tiny_model):
    model = tiny_model.model
    before = _state(model)
    probe = AttentionProbe(capture="all")
    with pytest.raises(RuntimeError, match="boom"):
        with attention_probe(model, probe):
            assert model.config._attn_implementation.startswith("genattrib_probe_")
            assert _state(model)[2] != before[2]
            with torch.no_grad():
                model(input_ids=_ids(tiny_model, 1))
            raise RuntimeError("boom")
    assert probe.probs and _state(model) == before
    assert model.config._attn_implementation == "sdpa"


def test_nested_probes_restore_in_order(tiny_llama):
    model = tiny_llama.model
    before = _state(model)
    with attention_probe(model, AttentionProbe()):
        inner_before = model.config._attn_implementation
        with attention_probe(model, AttentionProbe()):
            assert model.config._attn_implementation != inner_before
        assert model.config._attn_implementation == inner_before
    assert _state(model) == before


@pytest.mark.parametrize("method", ["attention", "rollout"])
def test_attention_methods_same_on_sdpa_and_eager(tiny_model, method):
    import genattrib

    results = {}
    for implementation in ("sdpa", "eager"):
        hf = copy.deepcopy(tiny_model.model)
        hf.set_attn_implementation(implementation)
        am = genattrib.load_model((hf, tiny_model.tokenizer))
        results[implementation] = am.attribute(PROMPT, target=" Paris.", method=method).sequences[0].scores
        assert hf.config._attn_implementation == implementation
    torch.testing.assert_close(results["sdpa"], results["eager"], equal_nan=True, atol=1e-6, rtol=1e-5)
