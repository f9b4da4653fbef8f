"""A new method in one file: a propagation-kind toy, gradient × input under a rule that halves the
gradient through every MLP, defined and registered here only, passes the conformance suite. Its
scores are exactly what the rule implies (input × gradient with the MLP outputs' gradients halved
by hand) and differ from plain input × gradient."""

from __future__ import annotations

import pytest
import torch
from conformance import CHECKS, check_save_load, check_sharded, sharded_pair
from tolerance import assert_identical
from transformers.models.gpt2.modeling_gpt2 import GPT2MLP
from transformers.models.llama.modeling_llama import LlamaMLP
from transformers.models.qwen2.modeling_qwen2 import Qwen2MLP

import genattrib
from genattrib.cli import main
from genattrib.engine.model_hooks import RuleMap, ScaleGradient
from genattrib.engine.shared_forward import batch_input_gradients
from genattrib.errors import InvalidArgumentError, UnsupportedModelError
from genattrib.methods import MethodOutput, Propagation, registered_method

pytestmark = pytest.mark.numeric

PROMPT, TARGET = "The capital of France is", " Paris. The capital of Italy is Rome."


class HalfMlpInputXGradient(Propagation):
    """Input × gradient, the gradient through each MLP halved (an LRP-style rule, as a family map)."""

    name = "half_mlp_input_x_gradient"
    description = "input × gradient with the gradient through every MLP halved (a toy propagation rule)"

    def rules(self, forward) -> RuleMap:
        return {LlamaMLP: ScaleGradient(0.5), GPT2MLP: ScaleGradient(0.5), Qwen2MLP: ScaleGradient(0.5)}

    def attribute(self, batch, forward, attributed_fn) -> MethodOutput:
        return MethodOutput(batch_input_gradients(batch, forward, attributed_fn) * batch.input_embeds.float())


NAME = HalfMlpInputXGradient.name


@pytest.fixture
def toy():
    """The one line that registers the toy (for the test only: removed after it)."""
    with registered_method(HalfMlpInputXGradient) as cls:
        yield cls
    assert NAME not in genattrib.list_methods()


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_the_toy_conforms(tiny_llama, toy, check):
    CHECKS[check](tiny_llama, NAME, {})


def test_the_toy_saves_and_loads(tiny_llama, toy, tmp_path):
    check_save_load(tiny_llama, NAME, {}, tmp_path)


@pytest.mark.slow
def test_the_toy_on_a_sharded_model(tiny_tokenizer, tmp_path, toy):
    check_sharded(*sharded_pair(tiny_tokenizer, tmp_path), NAME, {})


def _halve(out: torch.Tensor) -> None:
    if out.requires_grad:
        out.register_hook(lambda g: g * 0.5)


def _halved_by_hand(model):
    """Forward hooks that halve the gradient reaching each MLP's output (plain tensor hooks)."""
    handles = []
    for module in model.modules():
        if isinstance(module, (LlamaMLP, GPT2MLP, Qwen2MLP)):
            handles.append(module.register_forward_hook(lambda m, a, out: _halve(out)))
    return handles


def test_the_scores_are_what_the_rule_implies(tiny_model, toy):
    out = tiny_model.attribute(PROMPT, TARGET, method=NAME)
    plain = tiny_model.attribute(PROMPT, TARGET, method="input_x_gradient")
    handles = _halved_by_hand(tiny_model.model)
    try:
        by_hand = tiny_model.attribute(PROMPT, TARGET, method="input_x_gradient")
    finally:
        for handle in handles:
            handle.remove()
    toy_scores, hand_scores = out.sequences[0].scores, by_hand.sequences[0].scores
    # the same operations on the same shapes (the rule multiplies the same gradient by 0.5): bit-identical
    assert_identical(toy_scores, hand_scores, what="toy vs hand-halved MLP gradients")
    difference = (toy_scores - plain.sequences[0].scores).nan_to_num(0).abs().max()
    assert difference > 1e-3 * plain.sequences[0].scores.nan_to_num(0).abs().max()
    # the rule is gone after the call: the model computes plain gradients again
    assert torch.equal(
        tiny_model.attribute(PROMPT, TARGET, method="input_x_gradient").sequences[0].scores.nan_to_num(0),
        plain.sequences[0].scores.nan_to_num(0),
    )
    assert all(not m._forward_hooks for m in tiny_model.model.modules())


def test_the_toy_is_listed_and_described(toy, capsys):
    described = {d["name"]: d for d in genattrib.describe_methods()}
    assert described[NAME]["kind"] == "propagation" and described[NAME]["needs_gradients"]
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert NAME in out and "propagation method" in out


def test_a_second_method_of_the_same_name_is_refused(toy):
    class Other(HalfMlpInputXGradient):
        pass

    with pytest.raises(InvalidArgumentError, match="already registered"):
        with registered_method(Other):
            pass
    assert genattrib.methods.method_class(NAME) is HalfMlpInputXGradient


def test_a_model_without_matching_modules_is_refused(tiny_llama, toy):
    class NoRules(HalfMlpInputXGradient):
        name = "no_rules"

        def rules(self, forward) -> RuleMap:
            return {GPT2MLP: ScaleGradient(0.5)}  # no GPT-2 module in a Llama

    with pytest.raises(UnsupportedModelError, match="no module"):
        tiny_llama.attribute(PROMPT, TARGET, method=NoRules())


def test_the_rule_is_removed_when_the_method_raises(tiny_llama, toy):
    class Failing(HalfMlpInputXGradient):
        name = "failing"

        def attribute(self, batch, forward, attributed_fn):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        tiny_llama.attribute(PROMPT, TARGET, method=Failing())
    assert all(not m._forward_hooks for m in tiny_llama.model.modules())
