"""Aggregation of attribution scores (hidden-dim reducers; more pipelines to come)."""

from genattrib.aggregation.hidden import HIDDEN_REDUCERS, reduce_hidden

__all__ = ["HIDDEN_REDUCERS", "reduce_hidden"]
