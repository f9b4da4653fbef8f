"""Resolve target names or user callables into :class:`TargetFunction` objects.

Built-in targets are immutable; users add their own per model (``model.register_target``) or
pass a callable directly, so there is no global mutable registry.

Example:
    >>> resolve_target("probability").name
    'probability'
    >>> resolve_target(lambda ctx: ctx.logits[:, 0]).name
    '<lambda>'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from genattrib.errors import InvalidArgumentError, UnknownNameError
from genattrib.targets.functions import BUILTIN_TARGETS, TargetFunction


def resolve_target(
    spec: str | TargetFunction | Callable,
    extra: Mapping[str, TargetFunction] | None = None,
    argument: str = "attributed_fn",
) -> TargetFunction:
    """Turn a name, a :class:`TargetFunction` or a callable into a :class:`TargetFunction`."""
    if isinstance(spec, TargetFunction):
        return spec
    if isinstance(spec, str):
        known = {**BUILTIN_TARGETS, **(extra or {})}
        if spec not in known:
            raise UnknownNameError(argument, spec, known)
        return known[spec]
    if callable(spec):
        return TargetFunction(getattr(spec, "__name__", "custom"), spec, "user function")
    raise InvalidArgumentError(
        argument, f"cannot use {type(spec).__name__} as a target", "pass a target name or a callable(ctx) -> tensor"
    )


def list_targets(extra: Mapping[str, TargetFunction] | None = None) -> list[str]:
    """Names of the built-in targets (plus ``extra``)."""
    return sorted({**BUILTIN_TARGETS, **(extra or {})})
