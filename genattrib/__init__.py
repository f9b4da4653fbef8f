"""genattrib: explain what a generative language model wrote.

Example:
    >>> import genattrib
    >>> model = genattrib.load_model()                                    # doctest: +SKIP
    >>> out = model.attribute("The capital of France is", max_new_tokens=8)
    >>> out.show()
    Sequence 0 ...
    ...
"""

from genattrib.progress import quiet_tqdm_in_notebook

quiet_tqdm_in_notebook()  # before transformers imports tqdm.auto: no ipywidgets warning in a notebook

from genattrib.context import ContextAttributionOutput, attribute_context  # noqa: E402
from genattrib.dataset import DatasetRun, attribute_dataset  # noqa: E402
from genattrib.errors import (  # noqa: E402
    GenattribError,
    GenattribWarning,
    InvalidArgumentError,
    RunInterrupted,
    UnknownNameError,
    UnsupportedModelError,
)
from genattrib.evaluation import EvaluationResult, evaluate, list_metrics  # noqa: E402
from genattrib.evaluation.benchmark import benchmark  # noqa: E402
from genattrib.evaluation.benchmark_result import BenchmarkResult  # noqa: E402
from genattrib.methods import describe_methods, list_methods  # noqa: E402
from genattrib.models import AttributionModel, load_model  # noqa: E402
from genattrib.models.options.explain_units import CharSpans  # noqa: E402
from genattrib.output import FeatureAttributionOutput, Provenance, SequenceAttribution  # noqa: E402
from genattrib.targets import list_targets  # noqa: E402
from genattrib.version import __version__  # noqa: E402

__all__ = [
    "AttributionModel",
    "BenchmarkResult",
    "CharSpans",
    "ContextAttributionOutput",
    "DatasetRun",
    "EvaluationResult",
    "FeatureAttributionOutput",
    "GenattribError",
    "GenattribWarning",
    "InvalidArgumentError",
    "Provenance",
    "RunInterrupted",
    "SequenceAttribution",
    "UnknownNameError",
    "UnsupportedModelError",
    "attribute_context",
    "attribute_dataset",
    "benchmark",
    "describe_methods",
    "evaluate",
    "list_methods",
    "list_metrics",
    "list_targets",
    "load_model",
    "__version__",
]
