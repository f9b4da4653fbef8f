"""The method contract: a new method needs only its own code and one registry line; methods
declare the resources they need and the engine binds them; a method name and a method object
take the same parameters; ``continuation=`` (alias ``target=``) and ``batch_size``."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
import torch
from tolerance import TINY_MODEL, assert_close_to_scale, assert_identical

import genattrib
from genattrib.engine import Attributor, MethodOutput, MethodParams, MethodTraits, RowBatch, bind_resources
from genattrib.errors import InvalidArgumentError, UnsupportedModelError
from genattrib.methods import get_method, registered_method
from genattrib.methods.vocabulary import Vocabulary

pytestmark = pytest.mark.numeric  # floats through other shapes: nox -s tests-portable re-runs them

PROMPT = "The capital of France is"


@dataclass
class LastSourceParams(MethodParams):
    weight: float = 1.0
    vocabulary: Vocabulary | None = None

    def validate(self) -> None:
        if self.weight <= 0:
            raise InvalidArgumentError("weight", f"must be positive, got {self.weight!r}", "pass e.g. weight=2.0")


class LastSource(Attributor):
    """A toy method: all of ``weight`` on the last source position; reports the vocabulary size."""

    name = "last_source"
    Params = LastSourceParams
    traits = MethodTraits(needs_gradients=False, requires=frozenset({"vocabulary"}))

    def attribute(self, batch: RowBatch, forward, attributed_fn) -> MethodOutput:
        scores = torch.zeros(batch.num_rows, batch.length)
        for r, p in enumerate(batch.target_positions.tolist()):
            scores[r, p - 1] = self.params.weight
        size = torch.full((batch.num_rows,), float(self.params.vocabulary.size))
        return MethodOutput(scores, {"vocabulary_size": size})


@pytest.fixture
def registered() -> type[Attributor]:
    """The registry line is the only thing outside the method's own code (removed after the test)."""
    with registered_method(LastSource) as cls:
        yield cls
    assert "last_source" not in genattrib.list_methods()


def test_a_new_method_needs_only_its_code_and_the_registry(tiny_llama, registered) -> None:
    out = tiny_llama.attribute(PROMPT, " Paris. The", method="last_source", weight=2.0)
    seq = out.sequences[0]
    for j, p in enumerate(seq.target_positions):
        assert (
            seq.scores[j, p - 1] == 2.0 and seq.scores[j, : p - 1].abs().sum() == 0 and seq.scores[j, p:].isnan().all()
        )
    # the engine bound the resource the method declared, from the wrapper's tokenizer
    assert (seq.step_scores["vocabulary_size"] == len(tiny_llama.tokenizer)).all()
    assert out.provenance.method == "last_source" and out.provenance.method_params["weight"] == 2.0
    assert "last_source" in genattrib.list_methods()


def test_a_method_object_takes_the_same_parameters_as_its_name(tiny_llama, registered) -> None:
    by_name = tiny_llama.attribute(PROMPT, " Paris", method="last_source", weight=3.0)
    method = LastSource()
    by_object = tiny_llama.attribute(PROMPT, " Paris", method=method, weight=3.0)
    assert_identical(by_name.sequences[0].scores, by_object.sequences[0].scores)  # the same call, spelled otherwise
    assert method.params.weight == 1.0 and method.params.vocabulary is None  # the object is left as it was


def test_method_object_keywords_reach_the_method(tiny_llama) -> None:
    ig = get_method("integrated_gradients")
    by_object = tiny_llama.attribute(PROMPT, " Paris", method=ig, n_steps=3)
    by_name = tiny_llama.attribute(PROMPT, " Paris", method="integrated_gradients", n_steps=3)
    assert by_object.provenance.method_params["n_steps"] == 3
    assert_identical(by_object.sequences[0].scores, by_name.sequences[0].scores)
    assert ig.params.n_steps != 3
    with pytest.raises(InvalidArgumentError, match="n_steps"):
        tiny_llama.attribute(PROMPT, " Paris", method=ig, n_steps=0)


def test_replace_validates_and_copies() -> None:
    ig = get_method("integrated_gradients", n_steps=8)
    assert ig.replace(n_steps=16).params.n_steps == 16 and ig.params.n_steps == 8
    with pytest.raises(InvalidArgumentError, match="n_steps"):
        ig.replace(n_steps=0)
    with pytest.raises(InvalidArgumentError, match="no parameter 'nsteps'"):
        ig.replace(nsteps=3)


def test_bind_fills_only_what_the_user_left_empty() -> None:
    mine = Vocabulary(size=5)
    given = LastSource(vocabulary=mine)
    calls: list[str] = []

    def provide() -> Vocabulary:
        calls.append("vocabulary")
        return Vocabulary(size=9)

    assert bind_resources(given, {"vocabulary": provide}).params.vocabulary is mine
    assert calls == []  # not even computed when the user gave one
    bound = bind_resources(LastSource(), {"vocabulary": provide})
    assert bound.params.vocabulary.size == 9 and calls == ["vocabulary"]
    with pytest.raises(InvalidArgumentError, match="does not require"):
        LastSource().bind(baseline_id=0)
    with pytest.raises(UnsupportedModelError, match="vocabulary"):
        bind_resources(LastSource(), {})


def test_builtin_methods_declare_what_they_need() -> None:
    described = {d["name"]: d for d in genattrib.describe_methods()}
    assert described["reagent"]["requires"] == ["vocabulary"]
    assert described["rpi"]["requires"] == ["baseline_id"]
    assert described["saliency"]["requires"] == []
    assert {n for n, d in described.items() if d["stochastic"]} >= {"gradient_shap", "lime", "reagent", "rpi"}
    assert {n for n, d in described.items() if d["needs_attentions"]} == {"attention", "rollout", "rpi"}


def test_needs_attentions_is_checked_before_work(tiny_llama) -> None:
    class NeedsAttention(LastSource):
        traits = replace(LastSource.traits, needs_attentions=True)

    calls = []
    original = tiny_llama.model.forward

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    # a model whose attention bypasses the registry is refused by the base check_model
    from genattrib.engine import attention_capture

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(attention_capture, "num_layers", lambda model: 10_000)
        patch.setattr(tiny_llama.model, "forward", counting)
        with pytest.raises(UnsupportedModelError, match="attention"):
            tiny_llama.attribute(PROMPT, max_new_tokens=2, method=NeedsAttention())
    assert calls == []  # refused before generation


def test_continuation_and_its_alias_target(tiny_llama) -> None:
    positional = tiny_llama.attribute(PROMPT, " Paris")
    keyword = tiny_llama.attribute(PROMPT, continuation=" Paris")
    alias = tiny_llama.attribute(PROMPT, target=" Paris")
    for out in (keyword, alias):
        assert_identical(out.sequences[0].scores, positional.sequences[0].scores)
    with pytest.raises(InvalidArgumentError, match="continuation= and its alias target="):
        tiny_llama.attribute(PROMPT, " Paris", target=" Paris")
    with pytest.raises(InvalidArgumentError, match="Invalid `continuation`"):
        tiny_llama.attribute(PROMPT, continuation="")
    with pytest.raises(InvalidArgumentError, match="Invalid `target`"):
        tiny_llama.attribute(PROMPT, target="")


def test_batch_size_groups_prompts_in_attribution_too(tiny_llama, registered, monkeypatch) -> None:
    prompts = [PROMPT, "Once upon a time", "A quick brown fox"]
    seen: list[set[int]] = []
    original = LastSource.attribute

    def spy(self, batch, forward, attributed_fn):
        seen.append(set(batch.sequence_index.tolist()))
        return original(self, batch, forward, attributed_fn)

    monkeypatch.setattr(LastSource, "attribute", spy)
    together = tiny_llama.attribute(prompts, max_new_tokens=3, method="last_source")
    assert any(len(s) > 1 for s in seen)  # by default, rows of several prompts share a batch
    seen.clear()
    one_by_one = tiny_llama.attribute(prompts, max_new_tokens=3, method="last_source", batch_size=1)
    assert seen and all(len(s) == 1 for s in seen)
    for a, b in zip(together.sequences, one_by_one.sequences):
        assert torch.equal(a.input_ids, b.input_ids)
        assert_close_to_scale(a.scores, b.scores, floor=TINY_MODEL)  # other batches


def test_builtin_methods_state_only_what_is_their_own() -> None:
    """The kind owns the planning: no gradient or attention method writes its own batching, and the
    registry's description names each method's kind."""
    from genattrib.methods import METHODS, AttentionKind, Gradient, Perturbation

    kinds = {d["name"]: d["kind"] for d in genattrib.describe_methods()}
    assert {n for n, k in kinds.items() if k == "attention"} == {"attention", "rollout", "rpi"}
    perturbation = {"occlusion", "lime", "reagent", "context_ablation", "value_zeroing"}
    assert {n for n, k in kinds.items() if k == "perturbation"} == perturbation
    assert set(kinds.values()) == {"gradient", "perturbation", "attention"}
    for name, cls in METHODS.items():
        assert issubclass(cls, (Gradient, Perturbation, AttentionKind)), name
        if name != "sequential_integrated_gradients":  # its forward-mode path plans its own rows
            assert not {"max_batch_targets", "planned_rows"} & set(vars(cls)), name
    assert METHODS["saliency"].traits.default_reduction == "l2" and METHODS["input_x_gradient"].traits.granular


def test_a_kind_refuses_traits_of_another_kind() -> None:
    """A perturbation method whose traits lack the perturbation fields is refused when it registers,
    with the fix named, not later with an AttributeError in the planner."""
    from genattrib.methods.kinds import Perturbation, PerturbationTraits

    class Blank(Perturbation):
        name = "blank_traits"
        traits = MethodTraits(needs_gradients=False)

        def rows_per_target(self, length: int) -> int:
            return length

        def attribute(self, batch: RowBatch, forward, attributed_fn) -> MethodOutput:
            return MethodOutput(torch.zeros(batch.num_rows, batch.length))

    with pytest.raises(InvalidArgumentError, match="PerturbationTraits") as error:
        with registered_method(Blank):
            pass
    assert "traits" in str(error.value) and "blank_traits" not in genattrib.list_methods()

    class Fixed(Blank):
        traits = PerturbationTraits()

    with registered_method(Fixed):
        assert "blank_traits" in genattrib.list_methods()
