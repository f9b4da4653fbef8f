"""Attribution methods, registered by name (:mod:`genattrib.methods.registration`).

Example:
    >>> "saliency" in list_methods()
    True
    >>> get_method("integrated_gradients", n_steps=8).params.n_steps
    8
"""

from __future__ import annotations

from genattrib.engine.contract import Attributor, MethodOutput, MethodParams, MethodTraits, RowBatch

# importing a method's module registers it (@register_method)
from genattrib.methods import (  # noqa: F401
    attention,
    context_ablation,
    deeplift,
    discretized_integrated_gradients,
    gradient_shap,
    input_x_gradient,
    integrated_gradients,
    layer_deeplift,
    layer_gradient_x_activation,
    layer_integrated_gradients,
    lime,
    occlusion,
    reagent,
    rpi,
    saliency,
    sequential_integrated_gradients,
    uniform_discretized_integrated_gradients,
    value_zeroing,
)
from genattrib.methods.kinds import (
    AttentionKind,
    AttentionTraits,
    Gradient,
    GradientTraits,
    Perturbation,
    PerturbationTraits,
    Propagation,
)
from genattrib.methods.registration import (
    METHODS,
    describe_methods,
    get_method,
    list_methods,
    method_class,
    register_method,
    registered_method,
    unregister_method,
)

__all__ = [
    "METHODS",
    "AttentionKind",
    "AttentionTraits",
    "Attributor",
    "Gradient",
    "GradientTraits",
    "MethodOutput",
    "MethodParams",
    "MethodTraits",
    "Perturbation",
    "PerturbationTraits",
    "Propagation",
    "RowBatch",
    "describe_methods",
    "get_method",
    "list_methods",
    "method_class",
    "register_method",
    "registered_method",
    "unregister_method",
]
