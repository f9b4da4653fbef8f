"""AttributeOptions, written once: ``attribute()``'s signature mirrors it, the resume fingerprint
decides every field, and generation's ``top_k`` reaches ``generate`` (the storage option is
``top_k_scores``; the old storage spelling warns for one release)."""

from __future__ import annotations

import dataclasses
import inspect
import warnings

import pytest
import torch

from genattrib.models import AttributeOptions, AttributionModel
from genattrib.models.pipeline.stages import prepare_call
from genattrib.models.results.storage import BY_VALUE, NOT_IN_RESULTS, RESOLVED, fingerprint

PROMPT = "The capital of France is"
FIXED = ("self", "inputs", "continuation", "target", "kwargs")


def options_of(fn) -> list[tuple[str, object]]:
    return [(p.name, p.default) for p in inspect.signature(fn).parameters.values() if p.name not in FIXED]


def test_attribute_signature_is_the_options():
    """attribute() spells the options out (IDEs, docs); they are the fields, in order, with the same defaults."""
    fields = [(f.name, f.default) for f in dataclasses.fields(AttributeOptions) if f.name != "kwargs"]
    assert options_of(AttributionModel.attribute) == fields
    assert tuple(name for name, _ in fields) == AttributeOptions.names()


def test_estimate_named_options_are_options_with_the_same_defaults():
    defaults = dict(options_of(AttributeOptions))
    named = [(n, d) for n, d in options_of(AttributionModel.estimate) if n != "calibrate"]
    assert named and all(defaults[n] == d for n, d in named)


def test_from_arguments_sorts_options_and_the_rest():
    options = AttributeOptions.from_arguments({"seed": 3, "explain": "words", "n_steps": 8, "max_new_tokens": 2})
    assert (options.seed, options.explain, options.kwargs) == (3, "words", {"n_steps": 8, "max_new_tokens": 2})


def test_every_option_is_decided_for_the_fingerprint():
    """A new field fails here until it is put in exactly one table of results/storage.py."""
    tables = [set(BY_VALUE), set(NOT_IN_RESULTS), set(RESOLVED)]
    fields = {f.name for f in dataclasses.fields(AttributeOptions)}
    assert sum(len(t) for t in tables) == len(set().union(*tables)), "an option is in two tables"
    assert set().union(*tables) == fields
    assert all(len(reason.split()) >= 3 for reason in {**NOT_IN_RESULTS, **RESOLVED}.values())


def _fingerprint(model, **arguments):
    call = prepare_call(model.parts, PROMPT, " Paris. The capital", None, AttributeOptions.from_arguments(arguments))
    return fingerprint(call.parts, call.request, call.storage)


@pytest.mark.parametrize(
    "change",
    [
        {"attr_pos_start": 1},
        {"attr_pos_end": 2},
        {"attribute_special_tokens": True},
        {"keep_granular": False},
        {"granular_budget_mb": 1.0},
        {"top_k_scores": 2},
        {"explain": "words"},
        {"sources": "sentences"},
        {"sources": "sentences", "sources_include_generated": True},
        {"method": "occlusion"},
        {"n_steps": 3, "method": "integrated_gradients"},
        {"attributed_fn": "probability"},
        {"seed": 5},
        {"contrast_prompt": "France is"},
        {"contrast_continuation": " Rome. The capital"},
        {"contrast_prompt": "France is", "contrast_force_inputs": True},
    ],
)
def test_options_that_change_the_scores_change_the_fingerprint(tiny_llama, change):
    base = {"method": "integrated_gradients", "n_steps": 2} if "n_steps" in change else {}
    if "sources_include_generated" in change:
        base = {"sources": "sentences"}
    if "contrast_force_inputs" in change:
        base = {"contrast_prompt": "France is"}
    assert _fingerprint(tiny_llama, **base) != _fingerprint(tiny_llama, **{**base, **change})


@pytest.mark.parametrize("change", [{"batch_size": 1}, {"max_rows": 2}, {"show_progress": False}])
def test_options_that_do_not_change_the_scores_keep_the_fingerprint(tiny_llama, change):
    assert _fingerprint(tiny_llama) == _fingerprint(tiny_llama, **change)


# --- top_k: generation's, and the old storage spelling ------------------------------------------------------
def teacher_forced_logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.model(ids.unsqueeze(0)).logits[0].float()


def test_sampling_top_k_reaches_generate_and_scores_stay_dense(tiny_llama):
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        out = tiny_llama.attribute(PROMPT, do_sample=True, top_k=50, max_new_tokens=4, seed=1)
    assert out.provenance.generation_config["top_k"] == 50 and out.provenance.generation_config["do_sample"]
    assert out.provenance.storage["top_k_scores"] is None
    seq = out.sequences[0]
    assert seq.sparse_scores is None and isinstance(seq.scores, torch.Tensor)


def test_sampling_top_1_is_greedy(tiny_llama):
    greedy = tiny_llama.attribute(PROMPT, max_new_tokens=6, method="occlusion")
    for seed in (1, 2, 3):
        top1 = tiny_llama.attribute(PROMPT, do_sample=True, top_k=1, temperature=50.0, max_new_tokens=6, seed=seed)
        assert top1.sequences[0].input_ids.tolist() == greedy.sequences[0].input_ids.tolist()


def test_sampling_draws_only_from_the_top_k(tiny_llama):
    """With a flat temperature every token of the top 2 is likely: each draw is still among them."""
    seen = set()
    for seed in range(6):
        out = tiny_llama.attribute(PROMPT, do_sample=True, top_k=2, temperature=100.0, max_new_tokens=8, seed=seed)
        seq = out.sequences[0]
        logits = teacher_forced_logits(tiny_llama, seq.input_ids)
        for position in range(seq.prompt_length, seq.input_ids.shape[0]):
            top = logits[position - 1].topk(2).indices.tolist()
            token = int(seq.input_ids[position])
            assert token in top
            seen.add(top.index(token))
    assert seen == {0, 1}  # it samples: the second likeliest token is drawn too


def test_old_storage_top_k_warns_and_keeps_its_meaning_when_not_sampling(tiny_llama):
    new = tiny_llama.attribute(PROMPT, " Paris. The capital", method="saliency", top_k_scores=2)
    with pytest.warns(FutureWarning, match="top_k_scores=2"):
        old = tiny_llama.attribute(PROMPT, " Paris. The capital", method="saliency", top_k=2)
    assert old.provenance.storage["top_k_scores"] == 2 and old.sequences[0].sparse_scores.k == 2
    assert torch.equal(old.sequences[0].sparse_scores.indices, new.sequences[0].sparse_scores.indices)
    with pytest.warns(FutureWarning, match="top_k_scores"):
        greedy = tiny_llama.attribute(PROMPT, method="saliency", max_new_tokens=3, top_k=2)
    assert greedy.sequences[0].sparse_scores.k == 2 and "top_k" not in greedy.provenance.generation_config
    with pytest.warns(FutureWarning, match="top_k_scores"):
        estimate = tiny_llama.estimate(PROMPT, " Paris.", top_k=2, calibrate=False)
    dense = tiny_llama.estimate(PROMPT, " Paris.", calibrate=False)
    assert estimate.memory["result"] != dense.memory["result"]


def test_top_k_with_top_k_scores_is_generations(tiny_llama):
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        out = tiny_llama.attribute(PROMPT, method="saliency", max_new_tokens=3, top_k=5, top_k_scores=2, do_sample=True)
    assert out.provenance.generation_config["top_k"] == 5 and out.sequences[0].sparse_scores.k == 2


# --- the facade and the pipeline ----------------------------------------------------------------------------
def test_the_request_holds_no_model_forward(tiny_llama):
    from genattrib.engine import ModelForward

    call = prepare_call(tiny_llama.parts, PROMPT, " Paris.", None, AttributeOptions())
    assert isinstance(call.forward, ModelForward)
    values = [getattr(call.request, f.name) for f in dataclasses.fields(call.request)]
    assert not any(isinstance(v, ModelForward) for v in values)
    assert dataclasses.is_dataclass(call.request) and type(call.request).__dataclass_params__.frozen


def test_no_module_of_models_reaches_into_a_private_attribute():
    """The pipeline reads public names (ModelParts); only the facade touches its own privates."""
    import ast
    from pathlib import Path

    import genattrib.models

    root = Path(genattrib.models.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "attribution_model.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                found.append(f"{path.relative_to(root)}:{node.lineno}: .{node.attr}")
    assert not found
