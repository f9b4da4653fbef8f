"""Out-of-memory back-off: a chunk that runs out of memory is halved and retried, same result."""

from __future__ import annotations

import pytest
import torch
from tolerance import TINY_MODEL, assert_close_to_scale, assert_same_sequence

from genattrib.engine.forward import ModelForward

pytestmark = pytest.mark.numeric  # floats through other shapes: nox -s tests-portable re-runs them


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
    assert_close_to_scale(got.sequences[0].scores, expected.sequences[0].scores, floor=TINY_MODEL)


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
    assert_close_to_scale(got.sequences[0].scores, expected.sequences[0].scores, floor=TINY_MODEL)


def test_other_errors_are_not_swallowed(tiny_llama, monkeypatch):
    def broken(self, embeds, **kwargs):
        raise RuntimeError("something else")

    monkeypatch.setattr(ModelForward, "hidden_states", broken)
    with pytest.raises(RuntimeError, match="something else"):
        tiny_llama.attribute("The capital of France is", target=" Paris", method="saliency")


# --- every model call under the back-off (issue 15 A.4) ---------------------------------------

PROMPTS = ["The capital of France is", "Once upon a time", "A quick brown fox", "Numbers like 1, 2"]


def _oom_when_batched(monkeypatch, owner, name, rows_of, limit=1):
    """Make ``owner.name`` raise a CPU allocation failure whenever it gets more than ``limit``
    rows (``rows_of(args, kwargs)``); returns the row counts it was called with."""
    seen: list[int] = []
    original = getattr(owner, name)

    def flaky(*args, **kwargs):
        rows = rows_of(args, kwargs)
        seen.append(rows)
        if rows > limit:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes (simulated)")
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, flaky)
    return seen


@pytest.mark.parametrize("sampling", [False, True])
def test_generate_halves_the_prompt_batch_on_oom(tiny_llama, monkeypatch, sampling):
    """``generate`` runs the prompts in one call; out of memory it halves the batch and retries.
    Greedy: the tokens of one call. Sampling: the text of a call with the batch the halving
    settled on (the retry restarts from the random state its batch started with)."""
    settings = {"max_new_tokens": 4, "do_sample": sampling, "seed": 7, "step_scores": ["probability"]}
    expected = tiny_llama.attribute(PROMPTS, method="saliency", batch_size=None if not sampling else 1, **settings)
    model = type(tiny_llama.model)
    seen = _oom_when_batched(monkeypatch, model, "generate", lambda a, k: int(k["input_ids"].shape[0]))
    got = tiny_llama.attribute(PROMPTS, method="saliency", **settings)
    assert seen[0] == len(PROMPTS) and seen[-1] == 1 and sorted(set(seen)) == [1, 2, 4]  # halved twice
    for a, b in zip(got.sequences, expected.sequences):
        assert a.input_ids.tolist() == b.input_ids.tolist()
        assert_close_to_scale(a.step_scores["probability"], b.step_scores["probability"], floor=TINY_MODEL)


def test_generate_does_not_swallow_other_errors(tiny_llama, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("something else")

    monkeypatch.setattr(type(tiny_llama.model), "generate", broken)
    with pytest.raises(RuntimeError, match="something else"):
        tiny_llama.attribute(PROMPTS, method="saliency", max_new_tokens=2)


def test_teacher_forced_step_scores_run_chunked_and_back_off(tiny_llama, monkeypatch):
    """Step scores of forced continuations run as rows of several sequences through the back-off."""
    targets = [" Paris. The", " there was", " jumps", " and 42"]
    expected = tiny_llama.attribute(PROMPTS, target=targets, method="occlusion", step_scores=["probability", "entropy"])
    from genattrib.engine import step_scores

    seen = []
    original = step_scores.teacher_forced_step_scores

    def spy(forward, jobs, wanted, chunk=256, **kwargs):
        calls = forward.model_calls
        result = original(forward, jobs, wanted, chunk, **kwargs)
        seen.append((forward.model_calls - calls, forward.oom_retries))
        return result

    monkeypatch.setattr("genattrib.models.pipeline.stages.teacher_forced_step_scores", spy)
    rows = _oom_when_batched(monkeypatch, ModelForward, "hidden_states", lambda a, k: int(a[1].shape[0]))
    got = tiny_llama.attribute(PROMPTS, target=targets, method="occlusion", step_scores=["probability", "entropy"])
    assert rows[0] == len(PROMPTS)  # one chunk of every sequence first ...
    assert seen[0][0] == len(PROMPTS) and seen[0][1] >= 2  # ... then one row per call, after halving twice
    for a, b in zip(got.sequences, expected.sequences):
        for name in ("probability", "entropy"):
            assert_close_to_scale(a.step_scores[name], b.step_scores[name], floor=TINY_MODEL)


@pytest.mark.parametrize(
    "method,params",
    [
        ("discretized_integrated_gradients", {"n_anchors": 3}),  # own paths: rows built per chunk
        ("gradient_shap", {"n_samples": 3, "stdevs": 0.1}),  # noise: shared rows built per chunk
        ("gradient_shap", {"n_samples": 3, "explain": "sentences"}),  # unit rows: own draws per row
        ("sequential_integrated_gradients", {"n_steps": 3}),
    ],
)
def test_path_rows_are_built_per_chunk_and_back_off(tiny_llama, monkeypatch, method, params):
    """Path methods build each chunk's points when it runs: after an OOM the chunk is rebuilt
    smaller, no chunk ever holds more rows than the back-off allows, and the scores are the same."""
    expected = tiny_llama.attribute("The capital of France is", target=" Paris. The", method=method, **params)
    seen = _oom_when_batched(monkeypatch, ModelForward, "hidden_states", lambda a, k: int(a[1].shape[0]), limit=2)
    got = tiny_llama.attribute("The capital of France is", target=" Paris. The", method=method, **params)
    assert max(seen) > 2 and any(s <= 2 for s in seen)
    assert got.provenance.work["oom_retries"] >= 1 and got.provenance.work["max_chunk_rows"] <= 2
    assert_same_sequence(got.sequences[0], expected.sequences[0], floor=TINY_MODEL)
