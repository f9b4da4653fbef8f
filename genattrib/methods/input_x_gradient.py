"""Input × gradient: each embedding times the target's gradient w.r.t. it (sum over hidden).

Example:
    >>> out = model.attribute("The capital of France is", method="input_x_gradient", max_new_tokens=2)
"""

from __future__ import annotations

from collections.abc import Sequence

from genattrib.engine.contract import Attributor, MethodOutput, StepBatch
from genattrib.engine.forward import ModelForward
from genattrib.engine.plan import TargetRef
from genattrib.engine.shared_forward import batch_input_gradients, shared_batch_targets, shared_planned_rows
from genattrib.targets import TargetFunction


class InputXGradient(Attributor):
    name = "input_x_gradient"
    description = "input embedding times gradient; sum over hidden"
    granular = True
    default_reduction = "sum"
    group_by_sequence = True  # the targets of a sequence read shared forward rows (engine/shared_forward.py)

    def max_batch_targets(self, length: int, forward: ModelForward) -> int:
        return shared_batch_targets(length, forward)

    def planned_rows(
        self, refs: Sequence[TargetRef], forward: ModelForward, *, granular: bool = True
    ) -> list[tuple[int, int, int]]:
        return shared_planned_rows(refs, forward, 1)

    def attribute(self, batch: StepBatch, forward: ModelForward, attributed_fn: TargetFunction) -> MethodOutput:
        grads = batch_input_gradients(batch, forward, attributed_fn)
        return MethodOutput(grads * batch.input_embeds.float())
