"""Attention capture and injection through the transformers attention-function registry."""

from __future__ import annotations

import copy

import pytest
import torch
from tolerance import TINY_MODEL, assert_close_to_scale
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface

from genattrib.engine.attention_capture import (
    AttentionProbe,
    attention_probe,
    capture_attentions,
    capture_layer,
)
from genattrib.engine.forward import ModelForward

pytestmark = pytest.mark.numeric  # floats through other shapes: nox -s tests-portable re-runs them

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
    assert_close_to_scale(got, expected, floor=TINY_MODEL, what="captured vs eager attention")


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
        assert_close_to_scale(logits, original, floor=TINY_MODEL, what=f"logits with layer {layer} injected")
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
    assert_close_to_scale(results["sdpa"], results["eager"], floor=TINY_MODEL, what="sdpa vs eager scores")


# --- streamed attention and rollout (issue 15 A.4, E) -----------------------------------------


def _eager_attentions(model, ids):
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    with torch.no_grad():
        return torch.stack(eager(input_ids=ids, output_attentions=True).attentions)[:, 0]  # layer head L L


@pytest.mark.parametrize(
    "params",
    [{}, {"layers": [-1, 0], "heads": [1, -1], "head_reduction": "max", "layer_reduction": "sum"}],
)
def test_streamed_attention_equals_the_stacked_definition(tiny_model, params):
    """Reducing each layer as it is computed gives what reducing the stacked eager attentions gives."""
    out = tiny_model.attribute(PROMPT, target=" Paris. The", method="attention", **params)
    seq = out.sequences[0]
    probs = _eager_attentions(tiny_model.model, seq.input_ids[None, : int(seq.target_positions[-1])])
    layers = params.get("layers", list(range(probs.shape[0])))
    heads = params.get("heads", list(range(probs.shape[1])))
    picked = probs[torch.tensor(layers) % probs.shape[0]][:, torch.tensor(heads) % probs.shape[1]]
    how = {"mean": torch.mean, "sum": torch.sum, "max": torch.amax}
    for j, p in enumerate(seq.target_positions):
        rows = picked[:, :, p - 1, :p]  # the row that predicts position p
        per_layer = how[params.get("head_reduction", "mean")](rows, 1)
        expected = how[params.get("layer_reduction", "mean")](per_layer, 0)
        assert_close_to_scale(seq.scores[j, :p], expected, floor=TINY_MODEL, what=f"streamed attention, row {j}")


def test_streamed_rollout_equals_the_product_of_stacked_layers(tiny_model):
    out = tiny_model.attribute(PROMPT, target=" Paris. The", method="rollout", residual_weight=0.3)
    seq = out.sequences[0]
    length = int(seq.target_positions[-1])
    probs = _eager_attentions(tiny_model.model, seq.input_ids[None, :length]).mean(1)
    eye, rollout = torch.eye(length), torch.eye(length)
    for layer in probs:
        mixed = 0.7 * layer + 0.3 * eye
        rollout = (mixed / mixed.sum(-1, keepdim=True)) @ rollout
    for j, p in enumerate(seq.target_positions):
        assert_close_to_scale(seq.scores[j, :p], rollout[p - 1, :p], floor=TINY_MODEL, what=f"rollout, row {j}")


def test_attention_keeps_no_layer_and_counts_its_forwards(tiny_llama, monkeypatch):
    """One forward row per batch of at most 64 targets, counted in provenance.work; the probe is
    handed each layer's probabilities and stores none."""
    from genattrib.engine import attention_capture

    stored = []
    original = attention_capture.probe_attention_forward

    def spy(probe, *args, **kwargs):
        result = original(probe, *args, **kwargs)
        stored.append(len(probe.probs))
        return result

    monkeypatch.setattr(attention_capture, "probe_attention_forward", spy)
    paris = tiny_llama.tokenizer(" Paris", add_special_tokens=False)["input_ids"]
    forced = torch.tensor(paris * (80 // len(paris)))  # 80 forced tokens: two batches of targets (64 + 16)
    for method in ("attention", "rollout"):
        out = tiny_llama.attribute(PROMPT, forced, method=method)
        steps = out.sequences[0].num_steps
        assert steps > 64
        assert out.provenance.work["rows"] == out.provenance.work["model_calls"] == -(-steps // 64)
        assert stored and max(stored) == 0
