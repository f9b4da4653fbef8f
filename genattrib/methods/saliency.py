"""Saliency: the gradient of the target w.r.t. each input embedding (L2 norm by default).

Example:
    >>> out = model.attribute("The capital of France is", method="saliency", max_new_tokens=2)
"""

from __future__ import annotations

from genattrib.engine.contract import MethodOutput, RowBatch
from genattrib.engine.forward import ModelForward
from genattrib.engine.shared_forward import batch_input_gradients
from genattrib.methods.kinds import Gradient, GradientTraits
from genattrib.methods.registration import register_method
from genattrib.targets import TargetFunction


@register_method
class Saliency(Gradient):
    name = "saliency"
    description = "gradient of the target w.r.t. input embeddings; L2 norm over hidden"
    traits = GradientTraits(default_reduction="l2")

    def attribute(self, batch: RowBatch, forward: ModelForward, attributed_fn: TargetFunction) -> MethodOutput:
        grads = batch_input_gradients(batch, forward, attributed_fn)
        return MethodOutput(grads)
