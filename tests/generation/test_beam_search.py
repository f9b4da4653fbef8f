"""Beam search and several sequences per prompt: every result belongs to its own prompt."""

from __future__ import annotations

import pytest
from tolerance import TINY_MODEL, assert_close_to_scale

from genattrib.errors import InvalidArgumentError
from genattrib.models import attribution_model
from genattrib.models.pipeline import stages

pytestmark = pytest.mark.numeric  # floats through other shapes: nox -s tests-portable re-runs them

PROMPTS = ["The capital of France is", "Once upon a time"]


def test_beam_search_step_scores_are_those_of_the_returned_sequences(tiny_llama):
    out = tiny_llama.attribute(PROMPTS, max_new_tokens=4, num_beams=3, step_scores=["probability"])
    for prompt, seq in zip(PROMPTS, out.sequences, strict=True):
        assert (
            seq.tokens[: seq.prompt_length]
            == tiny_llama.attribute(prompt, max_new_tokens=1).sequences[0].tokens[: seq.prompt_length]
        )
        forced = tiny_llama.attribute(prompt, seq.input_ids[seq.prompt_length :], step_scores=["probability"])
        again = forced.sequences[0]  # the same tokens, teacher-forced in other rows
        assert_close_to_scale(seq.step_scores["probability"], again.step_scores["probability"], floor=TINY_MODEL)
        assert_close_to_scale(seq.scores, again.scores, floor=TINY_MODEL)


def test_several_sequences_per_prompt_are_refused_before_generation(tiny_llama, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("generated")

    monkeypatch.setattr(attribution_model, "generate_traces", never)  # generate()
    monkeypatch.setattr(stages, "generate_traces", never)  # attribute()
    for call in (tiny_llama.attribute, tiny_llama.generate):
        with pytest.raises(InvalidArgumentError, match="num_return_sequences") as info:
            call(PROMPTS, max_new_tokens=4, num_beams=2, num_return_sequences=2)
        assert "[prompt] * 4" in str(info.value)
