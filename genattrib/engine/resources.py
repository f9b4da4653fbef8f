"""Give a method the resources it declares in ``MethodTraits.requires``.

The engine knows the names of resources, not how to make them: the caller (the model wrapper,
which owns the tokenizer) hands in a provider per name, called only when the method needs it
and the user left the parameter empty.

Example:
    >>> from genattrib.methods import get_method
    >>> from genattrib.methods.vocabulary import Vocabulary
    >>> reagent = bind_resources(get_method("reagent"), {"vocabulary": lambda: Vocabulary(size=8)})
    >>> sorted(reagent.traits.requires), reagent.params.vocabulary.size
    (['vocabulary'], 8)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from genattrib.engine.contract import Attributor
from genattrib.errors import UnsupportedModelError


def bind_resources(attributor: Attributor, providers: Mapping[str, Callable[[], Any]]) -> Attributor:
    """A copy of ``attributor`` with every required resource the user left ``None`` filled in
    from ``providers`` (``attributor`` itself when nothing is needed)."""
    missing = sorted(attributor.traits.requires - set(providers))
    if missing:
        raise UnsupportedModelError(
            f"method {attributor.name!r} needs {', '.join(missing)}, which this model wrapper cannot provide"
        )
    wanted = {
        name: providers[name]()
        for name in sorted(attributor.traits.requires)
        if getattr(attributor.params, name) is None
    }
    return attributor.bind(**wanted) if wanted else attributor
