"""``genattrib.evaluate``: how faithful is an attribution result to the model that produced it?

Example:
    >>> out = model.attribute("The capital of France is", max_new_tokens=6)
    >>> res = genattrib.evaluate(out, metrics=["soft_ns", "comprehensiveness"], model=model)
    >>> res.show()
    faithfulness (value [95% bootstrap interval])
    ...
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import Any

from genattrib.engine.forward import ModelForward, eval_mode
from genattrib.errors import InvalidArgumentError, UnknownNameError
from genattrib.evaluation.completeness import completeness
from genattrib.evaluation.result import EvaluationResult
from genattrib.faithfulness.bootstrap import per_example_means, summarize
from genattrib.faithfulness.context import EvalContext
from genattrib.faithfulness.metrics import DEFAULT_METRICS, METRICS, MetricOptions
from genattrib.faithfulness.soft import NORMALIZATIONS
from genattrib.faithfulness.steps import EvalSteps, collect_steps
from genattrib.machine import machine_record
from genattrib.models import AttributionModel, load_model
from genattrib.models.loading.default_model import DEFAULT_MODEL_NAME
from genattrib.models.options.arguments import resolve_baseline
from genattrib.output import FeatureAttributionOutput
from genattrib.seeding import DEFAULT_SEED
from genattrib.validation import check_choice, check_number, check_positive_int


def resolve_metrics(metrics: str | Sequence[str] | None) -> list[str]:
    """Validated metric names (``None`` → the defaults, ``"all"`` → every metric)."""
    if metrics is None:
        return list(DEFAULT_METRICS)
    if metrics == "all":
        return sorted(METRICS)
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    if not names:
        raise InvalidArgumentError("metrics", "no metric given", f"pass some of: {', '.join(sorted(METRICS))}")
    for name in names:
        if not isinstance(name, str) or name not in METRICS:
            raise UnknownNameError("metric", str(name), METRICS)
    return list(dict.fromkeys(names))


def _resolve_model(out: FeatureAttributionOutput, model: AttributionModel | None) -> AttributionModel:
    produced_by = out.provenance.model_name
    if model is None:
        if produced_by != DEFAULT_MODEL_NAME:
            raise InvalidArgumentError(
                "model",
                f"the result was made by {produced_by!r}, which genattrib cannot reload by itself",
                "pass model=<the AttributionModel that produced it>, e.g. genattrib.evaluate(out, model=model)",
            )
        return load_model()
    if not isinstance(model, AttributionModel):
        raise InvalidArgumentError(
            "model",
            f"expected an AttributionModel, got {type(model).__name__}",
            "wrap it with genattrib.load_model((hf_model, tokenizer))",
        )
    if produced_by and model.name != produced_by:
        warnings.warn(f"evaluating a result made by {produced_by!r} with model {model.name!r}", stacklevel=3)
    return model


def _baseline_id(model: AttributionModel, baseline: Any) -> int:
    resolved = resolve_baseline(baseline, model.tokenizer, model.model.get_input_embeddings().weight.shape[1])
    if resolved.token_id is None:
        raise InvalidArgumentError(
            "baseline",
            "evaluation replaces tokens, so it needs a baseline token, not a vector",
            "pass a token: 'unk', 'pad', 'eos' or a single-token string",
        )
    return resolved.token_id


def _check_options(k: float | int, soft_normalization: str, n_bootstrap: int) -> None:
    check_number("k", k, "k=20", low=0, high=100, what="a percentage")
    check_choice("soft_normalization", soft_normalization, NORMALIZATIONS, "normalisation")
    check_positive_int("n_bootstrap", n_bootstrap, "n_bootstrap=1000")


def evaluate_steps(
    model: AttributionModel,
    steps: EvalSteps,
    metrics: Sequence[str],
    *,
    k: float | int = 20.0,
    seed: int = DEFAULT_SEED,
    baseline: Any = None,
    soft_normalization: str = "sum",
    n_bootstrap: int = 1000,
    max_rows: int | None = None,
) -> EvaluationResult:
    """Metrics for already collected steps (what :func:`evaluate` and the benchmark share)."""
    t0 = time.perf_counter()
    names = resolve_metrics(metrics)
    _check_options(k, soft_normalization, n_bootstrap)
    forward = ModelForward(model.model, max_rows=max_rows or model.max_rows, probed=model.parts.probed)
    vocab = forward.vocab_size
    if any(int(p.max()) >= vocab for p in steps.prefixes if p.numel()) or int(steps.target_ids.max()) >= vocab:
        raise InvalidArgumentError(
            "model",
            f"the result has token ids beyond the model's vocabulary ({vocab})",
            "evaluate with the model that produced the result",
        )
    ctx = EvalContext(
        forward,
        steps,
        _baseline_id(model, baseline),
        seed,
        keep_distributions=any(METRICS[n].uses_distribution for n in names),
    )
    options = MetricOptions(k=float(k), soft_normalization=soft_normalization)
    per_step, random_per_step, summary = {}, {}, {}
    with eval_mode(model.model):
        for name in names:
            metric = METRICS[name]
            values, random = metric.compute(ctx, options)
            per_step[name] = values.float()
            if random is not None:
                random_per_step[name] = random.float()
            summary[name] = summarize(
                per_example_means(values, steps.example),
                None if random is None else per_example_means(random, steps.example),
                metric.summary,
                n_bootstrap,
                seed,
            )
    info = {
        "model": model.name,
        "metrics": names,
        "k": float(k),
        "seed": int(seed),
        "soft_normalization": soft_normalization,
        "baseline_id": ctx.baseline_id,
        "n_bootstrap": n_bootstrap,
        "steps": steps.num_steps,
        "examples": int(steps.example.unique().numel()),
        "rows": forward.rows_run,
        "seconds": time.perf_counter() - t0,
        "machine": machine_record(),  # the CPU and kernels behind the numbers' last digits
    }
    return EvaluationResult(per_step, random_per_step, steps.example.clone(), steps.step.clone(), summary, info)


def evaluate(
    out: FeatureAttributionOutput,
    metrics: str | Sequence[str] | None = None,
    *,
    model: AttributionModel | None = None,
    every: int = 1,
    k: float | int = 20.0,
    seed: int = DEFAULT_SEED,
    baseline: Any = None,
    soft_normalization: str = "sum",
    n_bootstrap: int = 1000,
    max_rows: int | None = None,
) -> EvaluationResult:
    """Faithfulness of ``out`` (per evaluated step and summarised over its sequences).

    ``model`` is the :class:`AttributionModel` that produced ``out`` (optional for the embedded
    default model). ``every=2`` evaluates every second explained step. ``k`` is the percentage of
    tokens removed/kept by comprehensiveness, sufficiency and log-odds; ``baseline`` the token
    that replaces removed tokens (default UNK/PAD/EOS, as for the methods). Stochastic metrics
    (Soft-NS/NC and their random baseline) are seeded per step from ``seed``. For path methods
    ``info["completeness"]`` says how converged the scores are (:mod:`genattrib.evaluation.completeness`).
    """
    names = resolve_metrics(metrics)
    _check_options(k, soft_normalization, n_bootstrap)
    steps = collect_steps(out, every)
    model = _resolve_model(out, model)
    result = evaluate_steps(
        model,
        steps,
        names,
        k=k,
        seed=seed,
        baseline=baseline,
        soft_normalization=soft_normalization,
        n_bootstrap=n_bootstrap,
        max_rows=max_rows,
    )
    convergence = completeness(out)
    result.info.update(
        {
            "method": out.provenance.method,
            "method_params": out.provenance.method_params,
            "attributed_fn": out.provenance.attributed_fn,
            "every": every,
            "completeness": None if convergence is None else convergence.to_dict(),
        }
    )
    return result
