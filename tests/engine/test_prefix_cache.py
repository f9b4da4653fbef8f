"""KV reuse: suffixes over a shared clean prefix cache give today's full-row results (occlusion,
SIG, ablations), the planner covers every item, unsupported models fall back, OOM halves."""

from __future__ import annotations

import functools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reuse import compute_bound_device, kv_reuse
from tiny import make_model
from tolerance import assert_same_sequence, tiny_floor
from transformers import Qwen2Config, Qwen2ForCausalLM

import genattrib
from genattrib.engine.forward import ModelForward
from genattrib.engine.kv_cache import cache_keyword

pytestmark = pytest.mark.numeric  # floats through other shapes: nox -s tests-portable re-runs them

WORDS = "the cat sat on a mat and the dog ran over the hill while rain fell on the town".split()
PROMPT = "Doc one. The cat sleeps.\n\nDoc two. A fox jumps.\n\nQuestion: who?"
ANSWER = " The fox. It jumps over the dog."
SIG = {"method": "sequential_integrated_gradients", "n_steps": 3}


def _both(model, *args, **kwargs):
    """The result of the full rows and of the KV-reuse path, and the calls each made with a cache."""
    runs = {}
    for mode in ("never", "always"):
        with kv_reuse(mode):
            runs[mode] = model.attribute(*args, **kwargs)
    return runs["never"], runs["always"]


def _same(a, b):
    for x, y in zip(a.sequences, b.sequences, strict=True):
        floor = tiny_floor(a.provenance.method)
        assert_same_sequence(x, y, floor=floor, what=f"{a.provenance.method}: KV reuse never vs always")


@pytest.fixture
def cached_calls(monkeypatch):
    """Rows x length of every model call made over a cache."""
    seen = []
    original = ModelForward.hidden_states

    def spy(self, embeds, **kwargs):
        if kwargs:
            seen.append(tuple(embeds.shape[:2]))
        return original(self, embeds, **kwargs)

    monkeypatch.setattr(ModelForward, "hidden_states", spy)
    return seen


def test_every_tiny_model_supports_reuse(tiny_model):
    assert cache_keyword(ModelForward(tiny_model.model)) in ("cache", "past_key_values")


@pytest.mark.parametrize("params", [{"method": "occlusion"}, SIG], ids=["occlusion", "sig"])
def test_token_rows_equal_full_rows(tiny_model, params, cached_calls):
    full, reused = _both(
        tiny_model, ["The capital of France is", "A quick brown fox"], [" Paris. The", " jumps"], **params
    )
    assert cached_calls  # the reuse path ran
    _same(full, reused)


@settings(max_examples=4, deadline=None)
@given(n_words=st.integers(1, 14), n_target=st.integers(1, 4))
def test_random_lengths_equal_full_rows(tiny_llama, n_words, n_target):
    prompt, target = " ".join(WORDS[:n_words]), " " + " ".join(WORDS[n_words : n_words + n_target])
    for params in ({"method": "occlusion"}, SIG):
        _same(*_both(tiny_llama, prompt, target, **params))


@pytest.mark.parametrize("params", [{"method": "occlusion"}, SIG], ids=["occlusion", "sig"])
def test_unit_rows_and_contrast_equal_full_rows(tiny_model, params):
    _same(*_both(tiny_model, PROMPT, ANSWER, explain="sentences", **params))
    contrast = dict(attributed_fn="contrast_logprob_diff", contrast_target=" Rome")
    _same(*_both(tiny_model, "The capital of France is", " Paris", **contrast, **params))


def test_source_units_equal_full_rows(tiny_model):
    _same(*_both(tiny_model, PROMPT, ANSWER, method="occlusion", sources="sentences"))
    _same(*_both(tiny_model, PROMPT, ANSWER, method="occlusion", sources="sentences", explain="sentences"))


def test_occlusion_reruns_only_suffixes(tiny_llama, cached_calls):
    with kv_reuse("always"):
        out = tiny_llama.attribute(" ".join(WORDS), " and", method="occlusion")
    length = len(out.sequences[0].input_ids)
    tokens = sum(r * n for r, n in cached_calls)
    assert tokens < 0.75 * length * length  # the full rows: one per position, each the whole sequence


def test_auto_mode_reuses_for_occlusion_not_for_random_token_masks(tiny_llama, cached_calls, monkeypatch):
    # a device where compute, not calls, dominates (as for the default model): a call costs 4 tokens
    # (the tiny model's own measured overhead makes every extra call, recording the prefix included, too dear)
    compute_bound_device(monkeypatch, tiny_llama)
    tiny_llama.attribute(" ".join(WORDS), " and", method="occlusion")
    assert cached_calls
    cached_calls.clear()
    tiny_llama.attribute(" ".join(WORDS), " and", method="lime", n_samples=24)
    assert not cached_calls  # a random mask drops an early token: nothing to reuse


@pytest.mark.parametrize("params", [{"method": "occlusion"}, SIG], ids=["occlusion", "sig"])
def test_oom_in_a_suffix_chunk_halves_and_retries(tiny_llama, monkeypatch, params):
    # a device where a call costs a few tokens (not the tiny model's own, call-bound measurement):
    # suffixes of nearby positions share groups of 3 rows, more than the simulated memory allows
    compute_bound_device(monkeypatch, tiny_llama)
    with kv_reuse("always"):
        expected = tiny_llama.attribute("The capital of France is", " Paris. The", **params)
    seen = []
    original = ModelForward.hidden_states

    def flaky(self, embeds, **kwargs):
        if kwargs:
            seen.append(embeds.shape[0])
            if embeds.shape[0] > 2:
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(self, embeds, **kwargs)

    monkeypatch.setattr(ModelForward, "hidden_states", flaky)
    with kv_reuse("always"):
        got = tiny_llama.attribute("The capital of France is", " Paris. The", **params)
    assert max(seen) > 2 and any(s <= 2 for s in seen)
    _same(expected, got)


def test_sliding_window_models_fall_back(tiny_tokenizer):
    config = Qwen2Config(
        vocab_size=len(tiny_tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        use_sliding_window=True,
        sliding_window=4,
        max_window_layers=0,
    )
    model = genattrib.load_model((Qwen2ForCausalLM(config).eval(), tiny_tokenizer))
    assert cache_keyword(ModelForward(model.model)) is None
    with kv_reuse("always"):
        out = model.attribute("The capital of France is", " Paris", method="occlusion")
    assert torch.isfinite(out.sequences[0].scores[0, 1:5]).all()


def test_models_whose_cached_run_differs_fall_back(tiny_tokenizer, monkeypatch):
    model = genattrib.load_model((make_model("llama", tiny_tokenizer, seed=1), tiny_tokenizer))
    base = ModelForward(model.model).base
    real = base.forward

    @functools.wraps(real)
    def forgetful(*args, **kwargs):  # takes a cache, but ignores the prefix in it
        kwargs.pop("cache", None), kwargs.pop("past_key_values", None)
        return real(*args, **kwargs)

    monkeypatch.setattr(base, "forward", forgetful)
    assert cache_keyword(ModelForward(model.model)) is None
