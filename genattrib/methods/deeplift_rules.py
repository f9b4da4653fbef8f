"""DeepLIFT's rescale rule for the elementwise nonlinearities of a model (SiLU, GELU, ReLU, tanh ...),
written through the model hook.

The rescale rule (Shrikumar et al., 2017) replaces a nonlinearity's local derivative by the
secant slope between the input and the reference: ``m = (f(z) - f(z')) / (z - z')``, with ``z'``
the nonlinearity's input on the baseline (``f'(z)`` where ``|z - z'| < eps``). The references are
read by a first, forward-only run on the baseline (:class:`CaptureInputs`), then the input runs
with :class:`Rescale` on the same modules. Linear maps need no rule; products (attention, gated
MLPs), softmax and normalisation keep their gradients, as in Captum's DeepLift.

Example:
    >>> from genattrib.engine.model_hooks import hooked
    >>> refs = {}
    >>> with hooked(hf_model, nonlinearity_map(CaptureInputs(refs))):
    ...     _ = hf_model(torch.tensor([[1, 2, 3]]))
    >>> sorted(refs)[:1]
    ['model.layers.0.mlp.act_fn']
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from transformers.activations import ACT2CLS

from genattrib.engine.model_hooks import ModuleRule, ReplaceForward, RuleMap

#: Below this ``|z - z'|`` the rescale rule uses the local derivative (as Captum's ``eps``, for float32).
RESCALE_EPS = 1e-6

_TORCH_NONLINEAR = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
    nn.Hardswish,
    nn.Hardtanh,
)


def nonlinear_classes() -> tuple[type[nn.Module], ...]:
    """The elementwise activation classes: torch's and those of ``transformers.activations``."""
    found: list[type[nn.Module]] = list(_TORCH_NONLINEAR)
    for value in ACT2CLS.values():
        cls = value[0] if isinstance(value, tuple) else value
        if isinstance(cls, type) and issubclass(cls, nn.Module) and cls not in found and cls is not nn.Identity:
            if cls.__name__ != "LinearActivation":
                found.append(cls)
    return tuple(found)


def nonlinearity_map(rule: ModuleRule) -> RuleMap:
    """``rule`` on every elementwise activation module (a family map)."""
    return dict.fromkeys(nonlinear_classes(), rule)


class _RescaleFunction(torch.autograd.Function):
    """``f(z)`` forward; backward multiplies by the secant slope to the reference ``z'``."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, z_ref: Tensor, fn: Any) -> Tensor:  # type: ignore[override]
        with torch.no_grad():
            y = fn(z)
            y_ref = fn(z_ref)
        ctx.fn = fn
        ctx.save_for_backward(z, z_ref, y, y_ref)
        return y

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        z, z_ref, y, y_ref = ctx.saved_tensors
        delta_in = z - z_ref
        with torch.enable_grad():
            local = z.detach().requires_grad_(True)
            (local_grad,) = torch.autograd.grad(ctx.fn(local), local, grad)
        small = delta_in.abs() < RESCALE_EPS
        secant = (y - y_ref) / torch.where(small, torch.ones_like(delta_in), delta_in)
        return torch.where(small, local_grad, grad * secant), None, None


@dataclass
class CaptureInputs(ModuleRule):
    """Stores each matched module's input under the module's name in :attr:`inputs`."""

    inputs: dict[str, Tensor] = field(default_factory=dict)

    def attach(self, name: str, module: nn.Module, stack: contextlib.ExitStack) -> None:
        def run(original: Any, z: Tensor, *args: Any, **kwargs: Any) -> Tensor:
            self.inputs[name] = z.detach()
            return original(z, *args, **kwargs)

        ReplaceForward(run).attach(name, module, stack)


@dataclass(frozen=True)
class Rescale(ModuleRule):
    """The rescale rule on each matched module, its reference input read from ``references[name]``."""

    references: dict[str, Tensor]

    def attach(self, name: str, module: nn.Module, stack: contextlib.ExitStack) -> None:
        def run(original: Any, z: Tensor, *args: Any, **kwargs: Any) -> Tensor:
            ref = self.references.get(name)
            if ref is None or ref.shape != z.shape or not z.requires_grad:
                return original(z, *args, **kwargs)
            return _RescaleFunction.apply(z, ref.to(z.device, z.dtype), lambda t: original(t, *args, **kwargs))

        ReplaceForward(run).attach(name, module, stack)


__all__ = ["RESCALE_EPS", "CaptureInputs", "Rescale", "nonlinear_classes", "nonlinearity_map"]
