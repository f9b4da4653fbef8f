"""Layer gradient × activation: a layer's output times the target's gradient at it.

At the embedding layer (the default) this is input × gradient (shared forward rows); at a
hidden layer (a block index or a module name) each row runs once and its gradient is read at the
layer's output; the hidden dimension is summed to one score per position. No baseline.

Example:
    >>> out = model.attribute("The capital of France is", method="layer_gradient_x_activation", layer=-1,
    ...                       max_new_tokens=2)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from genattrib.engine.contract import MethodOutput, MethodParams, RowBatch
from genattrib.engine.forward import ModelForward
from genattrib.engine.row_refs import RowRef
from genattrib.methods.input_x_gradient import InputXGradient
from genattrib.methods.layer_forward import (
    EMBEDDINGS,
    check_layer_param,
    layer_grads_by_chunk,
    on_row_positions,
    resolve_layer,
)
from genattrib.methods.registration import register_method
from genattrib.targets import TargetFunction


@dataclass
class LayerGxAParams(MethodParams):
    """``layer``: ``None``/``"embeddings"`` (default), a block index or a module name."""

    layer: Any = None  # int | str | None, checked in validate (a named error, not a type error)

    def validate(self) -> None:
        check_layer_param(self.layer)


@register_method
class LayerGradientXActivation(InputXGradient):
    name = "layer_gradient_x_activation"
    description = "a layer's output times the gradient at it (embeddings by default); sum over hidden"
    Params = LayerGxAParams

    def _at_embeddings(self) -> bool:
        return self.params.layer is None or self.params.layer == EMBEDDINGS

    def shares_rows(self, refs: Sequence[RowRef]) -> bool:
        return self._at_embeddings() and super().shares_rows(refs)

    def check_model(self, forward: ModelForward, attributed_fn: TargetFunction) -> None:
        resolve_layer(forward.model, self.params.layer)
        super().check_model(forward, attributed_fn)

    def attribute(self, batch: RowBatch, forward: ModelForward, attributed_fn: TargetFunction) -> MethodOutput:
        if self._at_embeddings():
            return super().attribute(batch, forward, attributed_fn)
        layer = resolve_layer(forward.model, self.params.layer)
        parts: list[Tensor] = []

        def keep(_chunk: slice, _value: Tensor, grad: Tensor, out: Tensor) -> None:
            parts.append(grad * out.float())

        layer_grads_by_chunk(
            forward,
            layer,
            batch.num_rows,
            batch.length,
            lambda chunk: batch.input_embeds[chunk],
            lambda chunk: None,
            batch.explained(),
            attributed_fn,
            keep,
        )
        return MethodOutput(on_row_positions(forward, layer, torch.cat(parts), batch.length))
