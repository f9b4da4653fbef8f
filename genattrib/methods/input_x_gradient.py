"""Input × gradient: each embedding times the target's gradient w.r.t. it (sum over hidden).

Example:
    >>> out = model.attribute("The capital of France is", method="input_x_gradient", max_new_tokens=2)
"""

from __future__ import annotations

from genattrib.engine.contract import MethodOutput, RowBatch
from genattrib.engine.forward import ModelForward
from genattrib.engine.shared_forward import batch_input_gradients
from genattrib.methods.kinds import Gradient
from genattrib.methods.registration import register_method
from genattrib.targets import TargetFunction


@register_method
class InputXGradient(Gradient):
    name = "input_x_gradient"
    description = "input embedding times gradient; sum over hidden"

    def attribute(self, batch: RowBatch, forward: ModelForward, attributed_fn: TargetFunction) -> MethodOutput:
        grads = batch_input_gradients(batch, forward, attributed_fn)
        return MethodOutput(grads * batch.input_embeds.float())
