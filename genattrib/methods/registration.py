"""The registry of attribution methods: a method registers itself with one line.

``@register_method`` on a class adds it under its ``name`` for good (the built-in methods do this);
``with registered_method(cls):`` adds it for a block only and removes it after, also when the
block raises (a method defined in a test or a notebook, leaking into nothing else).
:data:`METHODS` is a live, read-only view of the registry.

Example:
    >>> from genattrib.methods import Attributor, MethodOutput
    >>> class Ones(Attributor):
    ...     name = "ones"
    ...     def attribute(self, batch, forward, attributed_fn):
    ...         return MethodOutput(torch.ones(batch.input_ids.shape))
    >>> with registered_method(Ones):
    ...     "ones" in METHODS
    True
    >>> "ones" in METHODS
    False
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

from genattrib.engine.contract import Attributor
from genattrib.errors import InvalidArgumentError, UnknownNameError

_REGISTRY: dict[str, type[Attributor]] = {}
#: Every registered method by name (read-only; it follows registrations).
METHODS: Mapping[str, type[Attributor]] = MappingProxyType(_REGISTRY)

M = TypeVar("M", bound=type[Attributor])


def _check_class(cls: Any) -> str:
    if not (inspect.isclass(cls) and issubclass(cls, Attributor)):
        raise InvalidArgumentError("cls", f"{cls!r} is not an Attributor subclass", "subclass a kind of method")
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(cls.__abstractmethods__))
        raise InvalidArgumentError("cls", f"{cls.__name__} is abstract (it lacks {missing})", "define them")
    kind = next((k for k in cls.__mro__ if "kind" in vars(k) and "traits" in vars(k)), None)
    expected = type(vars(kind)["traits"]) if kind is not None else type(cls.traits)
    if not isinstance(cls.traits, expected):
        raise InvalidArgumentError(
            "traits",
            f"{cls.__name__}.traits is a {type(cls.traits).__name__}; a {cls.kind} method's traits are a "
            f"{expected.__name__}",
            f"traits = {expected.__name__}(...), which starts from the kind's defaults",
        )
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name.isidentifier():
        raise InvalidArgumentError(
            "name", f"{cls.__name__}.name is {name!r}", 'set a class attribute name = "my_method" (an identifier)'
        )
    return name


def register_method(cls: M) -> M:
    """Add ``cls`` to the registry under ``cls.name`` (a class decorator); a name already taken
    by another class raises :class:`~genattrib.errors.InvalidArgumentError`."""
    name = _check_class(cls)
    existing = _REGISTRY.get(name)
    if existing is not None and existing is not cls:
        raise InvalidArgumentError(
            "name",
            f"a method named {name!r} is already registered ({existing.__module__}.{existing.__qualname__})",
            "choose another name, or unregister_method the old one first",
        )
    _REGISTRY[name] = cls
    return cls


def unregister_method(name: str) -> type[Attributor]:
    """Remove method ``name`` from the registry and return its class."""
    if name not in _REGISTRY:
        raise UnknownNameError("method", name, _REGISTRY)
    return _REGISTRY.pop(name)


@contextlib.contextmanager
def registered_method(cls: M) -> Iterator[M]:
    """``cls`` registered for the block only (removed on exit, also when the block raises)."""
    register_method(cls)
    try:
        yield cls
    finally:
        if _REGISTRY.get(cls.name) is cls:
            del _REGISTRY[cls.name]


def list_methods() -> list[str]:
    """Names of the registered attribution methods."""
    return sorted(_REGISTRY)


def method_class(name: str) -> type[Attributor]:
    """The class registered as ``name``."""
    if name not in _REGISTRY:
        raise UnknownNameError("method", name, _REGISTRY)
    return _REGISTRY[name]


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
    """One dict per registered method: name, kind, description, the traits (granular,
    needs_gradients, needs_attentions, stochastic, requires (resources bound by the engine),
    supports_units (explains ``explain="sentences"`` ... rows), ablates_source_units (perturbs whole
    ``sources=`` units), ...) and parameters."""
    out = []
    for name in list_methods():
        cls = _REGISTRY[name]
        traits = cls.traits.to_dict()
        traits.pop("step_score_merge")
        out.append(
            {"name": name, "kind": cls.kind, "description": cls.description, **traits, "parameters": cls.param_names()}
        )
    return out
