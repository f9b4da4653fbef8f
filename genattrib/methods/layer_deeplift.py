"""Layer DeepLIFT: DeepLIFT's rescale rule at a layer's output, ``(a(x) - a(x')) * m`` with ``a``
the output of ``layer`` (a block index, a module name, or the input embeddings by default,
where it equals ``deeplift``) and ``m`` its secant-slope gradient; the hidden dimension is
summed, so a hidden layer gives one score per position.

Example:
    >>> out = model.attribute("The capital of France is", method="layer_deeplift", layer=-1, max_new_tokens=2)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from genattrib.engine.forward import ModelForward
from genattrib.methods.deeplift import DeepLift, DeepLiftParams
from genattrib.methods.layer_forward import Layer, check_layer_param, resolve_layer
from genattrib.methods.registration import register_method


@dataclass
class LayerDeepLiftParams(DeepLiftParams):
    """``layer``: ``None``/``"embeddings"`` (default), a block index or a module name."""

    layer: Any = None  # int | str | None, checked in validate (a named error, not a type error)

    def validate(self) -> None:
        super().validate()
        check_layer_param(self.layer)


@register_method
class LayerDeepLift(DeepLift):
    name = "layer_deeplift"
    description = "DeepLIFT rescale rule at a layer's output (embeddings by default); sum over hidden"
    Params = LayerDeepLiftParams

    def layer(self, forward: ModelForward) -> Layer:
        return resolve_layer(forward.model, self.params.layer)
