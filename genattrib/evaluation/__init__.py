"""Faithfulness evaluation: which attribution method should a user trust on this model?

Example:
    >>> res = genattrib.evaluate(out, metrics=["soft_ns", "soft_nc"], model=model)
    >>> sorted(res.summary)
    ['soft_nc', 'soft_ns']
    >>> # long (ReAGent on 22 prompts), so not run here:
    >>> table = genattrib.benchmark(model, methods=["saliency", "reagent"], dataset="wikitext")  # doctest: +SKIP
"""

from genattrib.evaluation.evaluate import evaluate, evaluate_steps, resolve_metrics
from genattrib.evaluation.result import EvaluationResult
from genattrib.faithfulness.metrics import DEFAULT_METRICS, METRICS, Metric, list_metrics
from genattrib.faithfulness.steps import EvalSteps, collect_steps

__all__ = [
    "DEFAULT_METRICS",
    "METRICS",
    "EvalSteps",
    "EvaluationResult",
    "Metric",
    "collect_steps",
    "evaluate",
    "evaluate_steps",
    "list_metrics",
    "resolve_metrics",
]
