"""Loading models and the :class:`AttributionModel` wrapper."""

from genattrib.models.attribution_model import AttributionModel
from genattrib.models.estimate import Estimate
from genattrib.models.loading import load_model

__all__ = ["AttributionModel", "Estimate", "load_model"]
