"""Generation: one generate call, step scores recorded by hooks, EOS, seeds, no side effects."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tolerance import PERTURBATION, TINY_MODEL, assert_close_to_scale

import genattrib

pytestmark = pytest.mark.numeric  # floats through other shapes: nox -s tests-portable re-runs them

PROMPT = "The capital of France is"


def test_recorded_step_scores_equal_teacher_forced(tiny_model):
    names = ["probability", "logprob", "entropy", "rank"]
    gen = tiny_model.attribute(PROMPT, max_new_tokens=5, step_scores=names)
    seq = gen.sequences[0]
    ids = seq.input_ids[seq.prompt_length :].tolist()
    assert len(ids) >= 1
    forced = tiny_model.attribute(PROMPT, target=ids, step_scores=names)  # ids: no text round trip
    assert forced.sequences[0].input_ids.tolist() == seq.input_ids.tolist()
    for name in names:
        # recorded while generating (KV cache, one token at a time) vs teacher-forced rows
        assert_close_to_scale(seq.step_scores[name], forced.sequences[0].step_scores[name], floor=TINY_MODEL, what=name)
    assert (seq.step_scores["rank"] == 0).all()  # greedy decoding picks the top token


def test_generation_stops_at_eos(planted):
    model, _ = planted
    # the planted model copies the tokens at positions 1 and 3: make both <eos>
    out = model.attribute("The<eos> of<eos> is", max_new_tokens=6)
    seq = out.sequences[0]
    assert seq.input_ids[seq.prompt_length :].tolist() == [model.tokenizer.eos_token_id]
    assert seq.generated_text == ""
    assert seq.num_steps == 1


def test_sampling_is_seeded_and_restores_rng(tiny_llama):
    state = torch.random.get_rng_state()
    a = tiny_llama.attribute(PROMPT, max_new_tokens=8, do_sample=True, temperature=1.5, seed=11)
    assert torch.equal(state, torch.random.get_rng_state()), "seeded generation must not touch the global RNG"
    b = tiny_llama.attribute(PROMPT, max_new_tokens=8, do_sample=True, temperature=1.5, seed=11)
    c = tiny_llama.attribute(PROMPT, max_new_tokens=8, do_sample=True, temperature=1.5, seed=12)
    assert a.sequences[0].input_ids.tolist() == b.sequences[0].input_ids.tolist()
    assert a.sequences[0].input_ids.tolist() != c.sequences[0].input_ids.tolist()
    assert a.provenance.generation_config.get("do_sample") is True


def test_model_is_left_as_it_was(tiny_llama):
    model = tiny_llama.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    hooks = (len(model.get_output_embeddings()._forward_hooks), model.config._attn_implementation)
    model.train()
    try:
        tiny_llama.attribute(PROMPT, max_new_tokens=3, method="attention", step_scores=["probability"])
        assert model.training, "training flag restored"
    finally:
        model.eval()
    assert (len(model.get_output_embeddings()._forward_hooks), model.config._attn_implementation) == hooks
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_generation_config_passes_through(tiny_llama):
    from transformers import GenerationConfig

    out = tiny_llama.attribute(PROMPT, generation_config=GenerationConfig(max_new_tokens=2, do_sample=False))
    assert len(out.sequences[0].input_ids) - out.sequences[0].prompt_length <= 2
    out = tiny_llama.attribute(PROMPT, max_new_tokens=3, min_new_tokens=3)
    assert len(out.sequences[0].input_ids) - out.sequences[0].prompt_length == 3


def test_provenance_is_complete(tiny_llama):
    out = tiny_llama.attribute(PROMPT, max_new_tokens=2, method="integrated_gradients", n_steps=3)
    p = out.provenance
    assert p.method == "integrated_gradients" and p.method_params["n_steps"] == 3
    assert p.method_params["baseline"].startswith("token")
    assert p.attributed_fn == "logprob" and p.model_class == "LlamaForCausalLM"
    assert p.dtype == "float32" and p.devices == ["cpu"]
    assert {"genattrib", "torch", "transformers"} <= set(p.versions)
    assert {"generate", "attribute", "total"} <= set(p.timings)
    assert p.generation_config["max_new_tokens"] == 2


def test_generate_returns_what_attribute_explains(tiny_model):
    prompts = ["a b c", "d e f g"]
    ids = tiny_model.generate(prompts, max_new_tokens=4)
    out = tiny_model.attribute(prompts, max_new_tokens=4, method="occlusion")
    assert [i.tolist() for i in ids] == [s.input_ids[s.prompt_length :].tolist() for s in out.sequences]
    forced = tiny_model.attribute(prompts, target=ids, method="occlusion")
    for a, b in zip(forced.sequences, out.sequences):
        assert_close_to_scale(a.scores, b.scores, floor=PERTURBATION, what="occlusion")
    with pytest.raises(genattrib.InvalidArgumentError):
        tiny_model.generate(prompts, batch_size=0)


FOX = "A quick brown fox"
FOX_TEXT = " w2 of1"  # the tiny Llama's greedy text after FOX starts with these tokens: ' w', '2', ' of', '1'


def _stopped_at(tokenizer, ids: list[int], stop: str) -> list[int]:
    """The prefix of ``ids`` up to the token whose text completes ``stop`` (all of them if none does)."""
    for k in range(1, len(ids) + 1):
        if stop in tokenizer.decode(ids[:k]):
            return ids[:k]
    return ids


@settings(max_examples=12, deadline=None)
@given(bounds=st.tuples(st.integers(0, len(FOX_TEXT) - 1), st.integers(1, len(FOX_TEXT))))
def test_stop_strings_end_generation_at_the_string(tiny_llama, bounds):
    """``stop_strings=`` reaches ``generate`` with the tokenizer: each sequence of a batch ends with
    the token that completed a stop string (even a token running past it, as ' of' past "2 o"),
    none of the padding ``generate`` writes after it is kept, a prompt that never writes it runs to
    ``max_new_tokens``, and attribution explains exactly the tokens kept."""
    start, stop = min(bounds), max(bounds)
    string = FOX_TEXT[start:stop] if stop > start else FOX_TEXT[start:]
    tok, prompts = tiny_llama.tokenizer, [FOX, PROMPT]
    free = [ids.tolist() for ids in tiny_llama.generate(prompts, max_new_tokens=10)]
    assert tok.decode(free[0]).startswith(FOX_TEXT)
    expected = [_stopped_at(tok, ids, string) for ids in free]
    assert [ids.tolist() for ids in tiny_llama.generate(prompts, max_new_tokens=10, stop_strings=string)] == expected
    out = tiny_llama.attribute(prompts, max_new_tokens=10, stop_strings=[string], step_scores=["probability"])
    for seq, ids in zip(out.sequences, expected, strict=True):
        assert seq.input_ids[seq.prompt_length :].tolist() == ids
        assert seq.num_steps == len(ids) == seq.step_scores["probability"].shape[0]
        assert seq.scores.shape == (len(ids), seq.prompt_length + len(ids))
    assert len(out.sequences[0].generated_tokens) < 10  # the string was met, so generation stopped early
    forced = tiny_llama.attribute(prompts, target=[torch.tensor(ids) for ids in expected], step_scores=["probability"])
    for a, b in zip(out.sequences, forced.sequences, strict=True):
        assert_close_to_scale(a.scores, b.scores, floor=TINY_MODEL)
        assert_close_to_scale(a.step_scores["probability"], b.step_scores["probability"], floor=TINY_MODEL)
    assert out.provenance.generation_config["stop_strings"] == [string]


def test_stop_strings_in_an_estimate(tiny_llama):
    est = tiny_llama.estimate(FOX, max_new_tokens=4, stop_strings=["2 o"])
    assert est.predicted_seconds > 0
