"""The seed in the provenance is the seed that was used: a sampled result reproduces from its own
provenance, and a bad seed is refused before any work."""

from __future__ import annotations

import pytest

from genattrib.errors import InvalidArgumentError
from genattrib.models import attribution_model
from genattrib.models.pipeline import stages

PROMPT = "The capital of France is"
SAMPLE = {"max_new_tokens": 6, "do_sample": True, "temperature": 1.5}


def test_a_sampled_result_reproduces_from_its_provenance(tiny_llama):
    first = tiny_llama.attribute(PROMPT, **SAMPLE)
    second = tiny_llama.attribute(PROMPT, **SAMPLE)
    assert first.provenance.seed != second.provenance.seed  # seed=None: a fresh seed per sampled call
    again = tiny_llama.attribute(PROMPT, seed=first.provenance.seed, **SAMPLE)
    assert again.provenance.seed == first.provenance.seed
    assert again.sequences[0].input_ids.tolist() == first.sequences[0].input_ids.tolist()
    assert (again.sequences[0].scores.nan_to_num() == first.sequences[0].scores.nan_to_num()).all()


def test_greedy_calls_record_the_default_seed(tiny_llama):
    out = tiny_llama.attribute(PROMPT, max_new_tokens=2)
    assert out.provenance.seed == 42
    assert tiny_llama.attribute(PROMPT, max_new_tokens=2, seed=7).provenance.seed == 7


@pytest.fixture
def no_generation(monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("the model generated before the seed was checked")

    monkeypatch.setattr(attribution_model, "generate_traces", never)  # generate()
    monkeypatch.setattr(stages, "generate_traces", never)  # attribute()


@pytest.mark.parametrize(
    "seed", [2**70, -1, True]
)  # "x" and 1.7: tests/models/test_errors.py (without the type checker)
def test_a_bad_seed_is_refused_before_work(tiny_llama, seed, no_generation):
    with pytest.raises(InvalidArgumentError, match="seed"):
        tiny_llama.attribute(PROMPT, max_new_tokens=2, seed=seed)
    with pytest.raises(InvalidArgumentError, match="seed"):
        tiny_llama.generate(PROMPT, max_new_tokens=2, seed=seed)
