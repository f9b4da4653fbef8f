"""Scoped changes to how a model's modules compute, for one block: the model hook of the method
contract.

A method (or the engine) states *what* changes; :func:`hooked` applies it for the block and
undoes every change on exit, also when the block raises. Three shapes of change:

* a **family map** ``{module class: rule}`` (as LXT writes a model family): every module of the
  model that is an instance of a key gets that rule (the most specific class wins);
* a :class:`ModuleRule` applied to those modules: :class:`ScaleGradient` / :class:`GradientRule`
  (a backward rule on the module's output, for LRP), :class:`ReplaceOutput` (e.g. zeroed value
  vectors), :class:`ReplaceForward` (the module's forward swapped, e.g. for a rule with its own
  backward), :class:`CaptureOutputs` (layer capture);
* a :class:`ModelHook`: a change to the whole model, such as routing attention through a probe
  (:mod:`genattrib.engine.attention_capture`) or a torch function mode (forward mode).

Example:
    >>> from transformers.models.llama.modeling_llama import LlamaMLP
    >>> capture = CaptureOutputs()
    >>> with hooked(hf_model, {LlamaMLP: capture}):
    ...     _ = hf_model(torch.tensor([[1, 2, 3]]))
    >>> sorted(capture.outputs)[:1], capture.outputs["model.layers.0.mlp"].shape
    (['model.layers.0.mlp'], torch.Size([1, 3, 32]))
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from genattrib.errors import InvalidArgumentError


class ModuleRule(ABC):
    """A change to one module's computation, attached for a block by :func:`hooked`."""

    @abstractmethod
    def attach(self, name: str, module: nn.Module, stack: contextlib.ExitStack) -> None:
        """Change ``module`` (called ``name`` in the model) and push the undoing onto ``stack``."""


class ModelHook(ABC):
    """A change to the whole model for a block (attention routing, a torch function mode ...)."""

    @abstractmethod
    def attach(self, model: nn.Module, stack: contextlib.ExitStack) -> None:
        """Change ``model`` and push the undoing onto ``stack``."""


#: A family map: module class -> the rule its instances follow (LXT style).
RuleMap = Mapping[type[nn.Module], ModuleRule]
#: What :func:`hooked` takes: family maps and model hooks, applied in order.
Hook = RuleMap | ModelHook


class _GradientMap(torch.autograd.Function):
    """Identity forward; backward maps the incoming gradient with ``fn``."""

    @staticmethod
    def forward(ctx: Any, value: Tensor, fn: Callable[[Tensor], Tensor]) -> Tensor:  # type: ignore[override]
        ctx.fn = fn
        return value.view_as(value)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return ctx.fn(grad), None


def _map_tensors(output: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    """``fn`` applied to ``output`` or, for a tuple output, to its first tensor (the hidden states)."""
    if isinstance(output, Tensor):
        return fn(output)
    if isinstance(output, tuple) and output and isinstance(output[0], Tensor):
        return (fn(output[0]), *output[1:])
    return output


@dataclass(frozen=True)
class GradientRule(ModuleRule):
    """Backward rule: the gradient reaching the module's output is replaced by ``fn(grad)`` before
    it flows into the module (the forward value is unchanged).

    Example:
        >>> rule = GradientRule(lambda g: g.clamp(min=0))      # only positive relevance flows back
    """

    fn: Callable[[Tensor], Tensor]

    def attach(self, name: str, module: nn.Module, stack: contextlib.ExitStack) -> None:
        def hook(_module: nn.Module, _args: Any, output: Any) -> Any:
            return _map_tensors(output, lambda t: _GradientMap.apply(t, self.fn) if t.requires_grad else t)

        stack.callback(module.register_forward_hook(hook).remove)


@dataclass(frozen=True)
class ScaleGradient(GradientRule):
    """Backward rule: the gradient through the module is multiplied by ``factor``.

    Example:
        >>> ScaleGradient(0.5).fn(torch.ones(2))
        tensor([0.5000, 0.5000])
    """

    factor: float = 1.0
    fn: Callable[[Tensor], Tensor] = field(init=False)

    def __post_init__(self) -> None:
        factor = self.factor
        object.__setattr__(self, "fn", lambda grad: grad * factor)


@dataclass(frozen=True)
class ReplaceOutput(ModuleRule):
    """Forward rule: the module's output (its first tensor, for a tuple) becomes ``fn(module,
    output)``; e.g. zeroed value vectors: ``ReplaceOutput(lambda m, v: v * keep)`` on ``v_proj``."""

    fn: Callable[[nn.Module, Tensor], Tensor]

    def attach(self, name: str, module: nn.Module, stack: contextlib.ExitStack) -> None:
        def hook(mod: nn.Module, _args: Any, output: Any) -> Any:
            return _map_tensors(output, lambda t: self.fn(mod, t))

        stack.callback(module.register_forward_hook(hook).remove)


@dataclass(frozen=True)
class ReplaceForward(ModuleRule):
    """The module's forward becomes ``fn(original_forward, *args, **kwargs)`` (an LRP rule with
    its own autograd function, for instance); the instance's own ``forward`` is restored on exit."""

    fn: Callable[..., Any]

    def attach(self, name: str, module: nn.Module, stack: contextlib.ExitStack) -> None:
        original = module.forward
        had_own = "forward" in module.__dict__
        module.forward = lambda *args, **kwargs: self.fn(original, *args, **kwargs)  # type: ignore[method-assign]

        def restore() -> None:
            if had_own:
                module.forward = original  # type: ignore[method-assign]
            else:
                module.__dict__.pop("forward", None)

        stack.callback(restore)


@dataclass
class CaptureOutputs(ModuleRule):
    """Layer capture: each matched module's output (first tensor, detached unless ``keep_graph``)
    is stored under the module's name in :attr:`outputs`, the last call's value winning."""

    keep_graph: bool = False
    outputs: dict[str, Tensor] = field(default_factory=dict)

    def attach(self, name: str, module: nn.Module, stack: contextlib.ExitStack) -> None:
        def hook(_module: nn.Module, _args: Any, output: Any) -> None:
            value = output if isinstance(output, Tensor) else output[0]
            self.outputs[name] = value if self.keep_graph else value.detach()

        stack.callback(module.register_forward_hook(hook).remove)


def _rule_for(module: nn.Module, family: RuleMap) -> ModuleRule | None:
    """The rule of the most specific class in ``family`` that ``module`` is an instance of."""
    for cls in type(module).__mro__:
        if cls in family:
            return family[cls]
    return None


def matched_modules(model: nn.Module, family: RuleMap) -> list[tuple[str, nn.Module, ModuleRule]]:
    """``(name, module, rule)`` for every module of ``model`` that ``family`` has a rule for."""
    found = []
    for name, module in model.named_modules():
        rule = _rule_for(module, family)
        if rule is not None:
            found.append((name, module, rule))
    return found


def _check(hook: object) -> None:
    if isinstance(hook, ModelHook):
        return
    if isinstance(hook, Mapping) and all(
        isinstance(k, type) and issubclass(k, nn.Module) and isinstance(v, ModuleRule) for k, v in hook.items()
    ):
        return
    raise InvalidArgumentError(
        "hooks",
        f"{type(hook).__name__} is neither a ModelHook nor a family map {{module class: ModuleRule}}",
        "pass e.g. {LlamaMLP: ScaleGradient(0.5)} or a ModelHook instance",
    )


@contextlib.contextmanager
def hooked(model: nn.Module, *hooks: Hook) -> Iterator[None]:
    """Apply ``hooks`` (family maps and :class:`ModelHook` objects, in order) to ``model`` for the
    block; every change is undone on exit, in reverse order, even when the block raises.

    Example:
        >>> from transformers.models.llama.modeling_llama import LlamaMLP
        >>> with hooked(hf_model, {LlamaMLP: ScaleGradient(0.5)}):
        ...     pass                                   # MLP gradients halved in here only
    """
    for hook in hooks:
        _check(hook)
    with contextlib.ExitStack() as stack:
        for hook in hooks:
            if isinstance(hook, ModelHook):
                hook.attach(model, stack)
            else:
                for name, module, rule in matched_modules(model, hook):
                    rule.attach(name, module, stack)
        yield


def count_hooked(model: nn.Module, hooks: Sequence[Hook]) -> int:
    """How many modules of ``model`` the family maps among ``hooks`` reach (model hooks count one)."""
    return sum(1 if isinstance(h, ModelHook) else len(matched_modules(model, h)) for h in hooks)


__all__ = [
    "CaptureOutputs",
    "GradientRule",
    "Hook",
    "ModelHook",
    "ModuleRule",
    "ReplaceForward",
    "ReplaceOutput",
    "RuleMap",
    "ScaleGradient",
    "count_hooked",
    "hooked",
    "matched_modules",
]
