"""Out-of-memory back-off: a chunk that runs out of memory is halved and retried, same result."""

from __future__ import annotations

import pytest
import torch

from genattrib.engine.forward import ModelForward


@pytest.mark.parametrize(
    "method,params",
    [
        ("gradient_shap", {"n_samples": 3}),  # shared forward rows: chunks of path points
        ("integrated_gradients", {"n_steps": 4}),
        ("integrated_gradients", {"n_steps": 4, "explain": "sentences"}),  # unit rows: one row per (unit, point)
        ("occlusion", {}),
    ],
)
def test_oom_halves_and_retries(tiny_llama, monkeypatch, method, params):
    expected = tiny_llama.attribute("The capital of France is", target=" Paris. The", method=method, **params)
    seen = []
    original = ModelForward.hidden_states  # every model call of values/values_and_grads goes through it

    def flaky(self, embeds, **kwargs):
        seen.append(embeds.shape[0])
        if embeds.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(self, embeds, **kwargs)

    monkeypatch.setattr(ModelForward, "hidden_states", flaky)
    got = tiny_llama.attribute("The capital of France is", target=" Paris. The", method=method, **params)
    assert max(seen) > 2 and any(s <= 2 for s in seen)
    torch.testing.assert_close(
        got.sequences[0].scores, expected.sequences[0].scores, equal_nan=True, atol=1e-5, rtol=1e-4
    )


@pytest.mark.parametrize("method,params", [("saliency", {}), ("integrated_gradients", {"n_steps": 2})])
def test_shared_forward_backward_passes_halve_on_oom(tiny_llama, monkeypatch, method, params):
    """Targets read from shared forward rows: a batched backward pass over too many targets runs
    out of memory, is halved and retried, and gives the same scores."""
    expected = tiny_llama.attribute("The capital of France is", target=" Paris. The", method=method, **params)
    seen = []
    original = torch.autograd.grad

    def flaky(outputs, inputs, grad_outputs=None, **kwargs):
        if kwargs.get("is_grads_batched"):
            seen.append(grad_outputs.shape[0])
            if grad_outputs.shape[0] > 2:
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(outputs, inputs, grad_outputs, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", flaky)
    got = tiny_llama.attribute("The capital of France is", target=" Paris. The", method=method, **params)
    assert max(seen) > 2 and any(s <= 2 for s in seen)
    torch.testing.assert_close(
        got.sequences[0].scores, expected.sequences[0].scores, equal_nan=True, atol=1e-5, rtol=1e-4
    )


def test_other_errors_are_not_swallowed(tiny_llama, monkeypatch):
    def broken(self, embeds, **kwargs):
        raise RuntimeError("something else")

    monkeypatch.setattr(ModelForward, "hidden_states", broken)
    with pytest.raises(RuntimeError, match="something else"):
        tiny_llama.attribute("The capital of France is", target=" Paris", method="saliency")
