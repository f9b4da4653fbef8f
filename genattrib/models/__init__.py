"""Loading models and the :class:`AttributionModel` wrapper, split along the pipeline:

* ``loading/``: :func:`load_model`, the embedded default model, device dispatch;
* ``options/``: :class:`AttributeOptions` (every option of ``attribute()``, written once) and the
  validated request they resolve to;
* ``pipeline/``: prepare → generate → plan → run → assemble, shared by ``attribute()`` and
  ``estimate()`` (which costs the plan: :class:`Estimate`);
* ``results/``: assembling the output, storage (top-k, streaming, the resume fingerprint), convergence;
* ``attribution_model.py``: :class:`AttributionModel`, the facade; ``model_parts.py``: what the
  pipeline reads of it (:class:`ModelParts`).
"""

from genattrib.models.attribution_model import AttributionModel
from genattrib.models.loading.loader import load_model
from genattrib.models.model_parts import ModelParts
from genattrib.models.options.attribute_options import AttributeOptions
from genattrib.models.pipeline.estimate import Estimate

__all__ = ["AttributeOptions", "AttributionModel", "Estimate", "ModelParts", "load_model"]
