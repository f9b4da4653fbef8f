"""Input × gradient: each embedding times the target's gradient w.r.t. it (sum over hidden).

Example:
    >>> out = model.attribute("The capital of France is", method="input_x_gradient", max_new_tokens=2)
"""

from __future__ import annotations

from genattrib.engine.contract import Attributor, MethodOutput, StepBatch
from genattrib.engine.forward import ModelForward
from genattrib.targets import TargetFunction


class InputXGradient(Attributor):
    name = "input_x_gradient"
    description = "input embedding times gradient; sum over hidden"
    granular = True
    default_reduction = "sum"

    def attribute(self, batch: StepBatch, forward: ModelForward, attributed_fn: TargetFunction) -> MethodOutput:
        _, grads = forward.values_and_grads(batch.input_embeds, batch.targets(), attributed_fn)
        return MethodOutput(grads * batch.input_embeds.float())
