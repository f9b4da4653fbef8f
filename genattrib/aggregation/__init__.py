"""Aggregation of attribution scores: hidden-dim reducers, normalisation, words, spans,
sentences, lines, chat roles, contrast pairs, and pipelines that compose them.

Every step returns a new result and leaves its input unchanged.

Example:
    >>> out.aggregate("words", "sentences").sequences[0].tokens
    ['The capital of France is', ' Paris.']
    >>> words = out.aggregate(Words(how="max"), Normalize("max-abs"))
    >>> occlusion = model.attribute(prompt, target=" Paris.", method="occlusion")
    >>> (out - occlusion).provenance.aggregations              # saliency minus occlusion
    ["pair(method='occlusion', attributed_fn='logprob', attributed_fn_args={})"]
"""

from genattrib.aggregation.base import Aggregator
from genattrib.aggregation.contrast import Pair, difference
from genattrib.aggregation.hidden import HIDDEN_REDUCERS, reduce_hidden
from genattrib.aggregation.pipeline import STEPS, Pipeline, aggregate
from genattrib.aggregation.positional import Lines, Roles, Sentences, Sources, Spans, Words
from genattrib.aggregation.reduce import Normalize, Reduce
from genattrib.aggregation.segments import STEP_SCORE_RULES

__all__ = [
    "HIDDEN_REDUCERS",
    "STEPS",
    "STEP_SCORE_RULES",
    "Aggregator",
    "Lines",
    "Normalize",
    "Pair",
    "Pipeline",
    "Reduce",
    "Roles",
    "Sentences",
    "Sources",
    "Spans",
    "Words",
    "aggregate",
    "difference",
    "reduce_hidden",
]
