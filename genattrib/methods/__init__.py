"""Attribution methods, registered by name.

Example:
    >>> "saliency" in list_methods()
    True
    >>> get_method("integrated_gradients", n_steps=8).params.n_steps
    8
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from genattrib.engine.contract import Attributor, MethodOutput, StepBatch
from genattrib.errors import UnknownNameError
from genattrib.methods.attention import Attention, Rollout
from genattrib.methods.context_ablation import ContextAblation
from genattrib.methods.discretized_integrated_gradients import DiscretizedIntegratedGradients
from genattrib.methods.gradient_shap import GradientShap
from genattrib.methods.input_x_gradient import InputXGradient
from genattrib.methods.integrated_gradients import IntegratedGradients
from genattrib.methods.lime import Lime
from genattrib.methods.occlusion import Occlusion
from genattrib.methods.reagent import ReAGent
from genattrib.methods.rpi import RPI
from genattrib.methods.saliency import Saliency
from genattrib.methods.sequential_integrated_gradients import SequentialIntegratedGradients
from genattrib.methods.uniform_discretized_integrated_gradients import (
    UniformDiscretizedIntegratedGradients,
)

METHODS: Mapping[str, type[Attributor]] = MappingProxyType(
    {
        cls.name: cls
        for cls in (
            Saliency,
            InputXGradient,
            IntegratedGradients,
            GradientShap,
            Occlusion,
            Attention,
            Rollout,
            SequentialIntegratedGradients,
            DiscretizedIntegratedGradients,
            UniformDiscretizedIntegratedGradients,
            ReAGent,
            Lime,
            RPI,
            ContextAblation,
        )
    }
)


def list_methods() -> list[str]:
    """Names of the registered attribution methods."""
    return sorted(METHODS)


def method_class(name: str) -> type[Attributor]:
    if name not in METHODS:
        raise UnknownNameError("method", name, METHODS)
    return METHODS[name]


def get_method(name: str | Attributor, **params: Any) -> Attributor:
    """An instance of method ``name`` with ``params`` (validated); a method object takes the same
    parameters, applied to a copy (:meth:`Attributor.replace`), so both spellings agree.

    Example:
        >>> get_method(get_method("integrated_gradients"), n_steps=8).params.n_steps
        8
    """
    if isinstance(name, Attributor):
        return name.replace(**params) if params else name
    return method_class(name)(**params)


def describe_methods() -> list[dict[str, Any]]:
    """One dict per method: name, description, granular, needs_gradients, needs_attentions,
    stochastic (draws from ``seed``), requires (resources bound by the engine), supports_units
    (explains ``explain="sentences"`` ... rows), ablates_source_units (perturbs whole
    ``sources=`` units), parameters."""
    return [
        {
            "name": cls.name,
            "description": cls.description,
            "granular": cls.granular,
            "needs_gradients": cls.needs_gradients,
            "needs_attentions": cls.needs_attentions,
            "stochastic": cls.stochastic,
            "requires": sorted(cls.requires),
            "supports_units": cls.supports_units,
            "ablates_source_units": cls.ablates_source_units,
            "parameters": cls.param_names(),
        }
        for cls in (METHODS[n] for n in list_methods())
    ]


__all__ = [
    "METHODS",
    "Attributor",
    "MethodOutput",
    "StepBatch",
    "describe_methods",
    "get_method",
    "list_methods",
    "method_class",
]
