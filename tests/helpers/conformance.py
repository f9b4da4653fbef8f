"""The conformance checks every registered method passes (tests/methods/test_method_conformance.py runs them
over the registry; a method defined in a test file runs them too, see tests/methods/test_new_method_in_one_file.py).

Each check takes a tiny model wrapper (tests/helpers/tiny.py), the method's name and its (small) parameters:

* :func:`check_batched` — prompts attributed together equal each prompt alone;
* :func:`check_estimate` — ``model.estimate()`` plans the model rows that the run counts;
* :func:`check_save_load` — the result saved and loaded again is the same result;
* :func:`check_units` — ``explain="sentences"`` where the method supports units, a clear refusal where not;
* :func:`check_sharded` — a model dispatched by accelerate (layers in RAM and on disk) gives the same scores.

Example::

    for check in CHECKS.values():
        check(tiny_llama, "saliency", {})
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from tolerance import assert_same_sequence, tiny_floor

import genattrib
from genattrib import FeatureAttributionOutput
from genattrib.errors import InvalidArgumentError
from genattrib.methods import method_class

PROMPTS = ["The capital of France is", "Once upon a time there"]
TARGETS = [" Paris. The capital of Italy is Rome.", " was a model. It explained"]
#: Small settings per method: the checks compare runs with each other, not with converged scores.
FAST: dict[str, dict[str, Any]] = {
    "integrated_gradients": {"n_steps": 3},
    "sequential_integrated_gradients": {"n_steps": 2},
    "gradient_shap": {"n_samples": 3},
    "discretized_integrated_gradients": {"n_anchors": 1},
    "uniform_discretized_integrated_gradients": {"n_anchors": 1},
    "lime": {"n_samples": 12},
    "context_ablation": {"n_samples": 12},
    "reagent": {"num_probes": 2, "max_steps": 3},
    "rpi": {"num_samples": 2, "n_steps": 2},
    # the layer methods at a hidden block (at the embeddings they are integrated_gradients, input_x_gradient, deeplift)
    "layer_integrated_gradients": {"n_steps": 3, "layer": 1},
    "layer_gradient_x_activation": {"layer": 1},
    "layer_deeplift": {"layer": 1},
}
#: Methods whose model rows are not known before they run: the estimate is within this share.
#: ReAGent stops each target when its probes say so; occlusion runs suffix rows only where the cost
#: model prefers them, and the estimate assumes full rows.
ROWS_WITHIN = {"reagent": 1.0, "occlusion": 0.1}
#: Methods that may run one clean-prefix row more than planned: where the cost model prefers it they
#: rerun only suffixes over the clean sequence's KV cache, recorded by one extra row that estimate()
#: does not count yet (engine/prefix_cache.py; the planner's to fix).
PREFIX_ROW = frozenset({"context_ablation", "lime", "sequential_integrated_gradients"})


def _same(a: Any, b: Any, method: str) -> None:
    assert a.tokens == b.tokens and a.prompt_length == b.prompt_length
    assert_same_sequence(a, b, floor=tiny_floor(method), what=method)


def check_batched(model: genattrib.AttributionModel, method: str, params: dict[str, Any]) -> None:
    """Two prompts at once equal each prompt alone (same seed, same targets)."""
    kwargs = dict(method=method, seed=5, step_scores=["probability"], **params)
    together = model.attribute(PROMPTS, target=TARGETS, **kwargs)
    for k, (prompt, target) in enumerate(zip(PROMPTS, TARGETS)):
        alone = model.attribute(prompt, target=target, **kwargs)
        _same(together.sequences[k], alone.sequences[0], method)


def check_estimate(model: genattrib.AttributionModel, method: str, params: dict[str, Any]) -> None:
    """``estimate()`` counts the explained rows exactly and the model rows the run counts."""
    est = model.estimate(PROMPTS[0], TARGETS[0], method=method, calibrate=False, seed=5, **params)
    out = model.attribute(PROMPTS[0], TARGETS[0], method=method, seed=5, **params)
    assert est.rows == out.sequences[0].num_steps
    run, planned = out.provenance.work["rows"], est.model_rows
    what = f"{method}: estimate() planned {planned} model rows, the run counted {run}"
    if method in ROWS_WITHIN:
        assert planned == pytest.approx(run, rel=ROWS_WITHIN[method]), what
    else:
        assert planned <= run <= planned + (1 if method in PREFIX_ROW else 0), what


def check_save_load(model: genattrib.AttributionModel, method: str, params: dict[str, Any], folder: Path) -> None:
    """The result saved and loaded equals the result: tokens, scores, step scores, provenance."""
    out = model.attribute(PROMPTS[0], TARGETS[0], method=method, seed=5, step_scores=["probability"], **params)
    back = FeatureAttributionOutput.load(out.save(folder / f"{method}.safetensors"))
    a, b = out.sequences[0], back.sequences[0]
    assert a.tokens == b.tokens
    assert torch.equal(a.scores.nan_to_num(7.0), b.scores.nan_to_num(7.0))
    assert a.step_scores.keys() == b.step_scores.keys()
    assert all(torch.equal(a.step_scores[k].nan_to_num(7.0), b.step_scores[k].nan_to_num(7.0)) for k in a.step_scores)
    assert back.provenance.method == method and back.provenance.method_params == out.provenance.method_params


def check_units(model: genattrib.AttributionModel, method: str, params: dict[str, Any]) -> None:
    """``explain="sentences"``: one row per sentence of the continuation, batched as alone; a
    method without unit rows refuses them by name before any work."""
    kwargs = dict(method=method, seed=5, explain="sentences", **params)
    if not method_class(method).traits.supports_units:
        with pytest.raises(InvalidArgumentError, match="explain"):
            model.attribute(PROMPTS[0], TARGETS[0], **kwargs)
        return
    together = model.attribute(PROMPTS, target=TARGETS, **kwargs)
    seq = together.sequences[0]
    assert seq.num_steps == 2 and len(seq.target_spans) == 2  # two sentences
    assert torch.isfinite(seq.scores[:, 1 : seq.prompt_length]).all()
    alone = model.attribute(PROMPTS[1], target=TARGETS[1], **kwargs)
    _same(together.sequences[1], alone.sequences[0], method)


def check_sharded(
    whole: genattrib.AttributionModel, sharded: genattrib.AttributionModel, method: str, params: dict[str, Any]
) -> None:
    """The model dispatched by accelerate (weights loaded per forward) gives the unsplit model's scores."""
    kwargs = dict(method=method, seed=5, step_scores=["probability"], **params)
    split = sharded.attribute(PROMPTS[0], TARGETS[0], **kwargs).sequences[0]
    _same(split, whole.attribute(PROMPTS[0], TARGETS[0], **kwargs).sequences[0], method)


#: The checks that need only one model (``check_save_load`` takes a folder too).
CHECKS: dict[str, Callable[..., None]] = {
    "batched": check_batched,
    "estimate": check_estimate,
    "units": check_units,
}

SHARD_MAP = {
    "model.embed_tokens": "disk",
    "model.rotary_emb": "cpu",
    "model.layers.0": "cpu",
    "model.layers.1": "disk",
    "model.norm": "cpu",
    "lm_head": "disk",
}


def sharded_pair(tokenizer: Any, folder: Path) -> tuple[genattrib.AttributionModel, genattrib.AttributionModel]:
    """(unsplit, sharded) tiny Llamas from the same saved weights: half the layers on disk."""
    from tiny import make_model

    make_model("llama", tokenizer).save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    whole = genattrib.load_model(folder / "model")
    sharded = genattrib.load_model(folder / "model", device_map=SHARD_MAP, offload_folder=folder / "offload")
    return whole, sharded
