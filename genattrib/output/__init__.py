"""Typed results: :class:`FeatureAttributionOutput` and its :class:`SequenceAttribution`."""

from genattrib.output.attribution import FeatureAttributionOutput
from genattrib.output.provenance import Provenance
from genattrib.output.sequence import SequenceAttribution

__all__ = ["FeatureAttributionOutput", "Provenance", "SequenceAttribution"]
