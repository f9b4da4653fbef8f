"""The evaluation core: batched perturbation of prefixes and the faithfulness metrics.

It sits below the methods (RPI's ``selection="best:<metric>"`` scores candidates with it) and
below the public :func:`genattrib.evaluate` / :func:`genattrib.benchmark` API in
:mod:`genattrib.evaluation`, which adds models, datasets and reports on top.

Example:
    >>> "soft_ns" in list_metrics()
    True
"""

from genattrib.faithfulness.metrics import DEFAULT_METRICS, METRICS, Metric, MetricOptions, list_metrics
from genattrib.faithfulness.steps import EvalSteps, collect_steps

__all__ = ["DEFAULT_METRICS", "METRICS", "EvalSteps", "Metric", "MetricOptions", "collect_steps", "list_metrics"]
