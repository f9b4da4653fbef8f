"""Saliency: the gradient of the target w.r.t. each input embedding (L2 norm by default).

Example:
    >>> out = model.attribute("The capital of France is", method="saliency", max_new_tokens=2)
"""

from __future__ import annotations

from genattrib.engine.contract import Attributor, MethodOutput, StepBatch
from genattrib.engine.forward import ModelForward
from genattrib.targets import TargetFunction


class Saliency(Attributor):
    name = "saliency"
    description = "gradient of the target w.r.t. input embeddings; L2 norm over hidden"
    granular = True
    default_reduction = "l2"

    def attribute(self, batch: StepBatch, forward: ModelForward, attributed_fn: TargetFunction) -> MethodOutput:
        _, grads = forward.values_and_grads(batch.input_embeds, batch.targets(), attributed_fn)
        return MethodOutput(grads)
