"""Compose aggregation steps: names, aggregator objects or lists of them, applied in order.

Names (:data:`STEPS`): the hidden-dim reducers ``sum``, ``l2``, ``mean``, ``absmax``, ``max``;
``normalize`` (``how=``), ``sum-to-1``, ``max-abs``; ``words``, ``spans``, ``sentences``,
``lines``, ``paragraphs``, ``roles``, ``sources``; ``pair`` (followed by the other result). Keyword
arguments go to the one named step that takes them.

Example:
    >>> out.aggregate("words", "sentences").sequences[0].tokens
    ['The capital of France is', ' Paris.']
    >>> out.aggregate(["words", Normalize("max-abs")]).sequences[0].tokens
    ['The', ' capital', ' of', ' France', ' is', ' Paris', '.']
    >>> out.aggregate("spans", spans=[(0, 14)]).sequences[0].tokens
    ['The capital of', ' Fr', 'ance', ' is', ' Par', 'is', '.']
    >>> other = model.attribute(prompt, target=" Paris.", method="occlusion")
    >>> for step in out.aggregate("pair", other, "words").provenance.aggregations:
    ...     print(step)
    pair(method='occlusion', attributed_fn='logprob', attributed_fn_args={})
    words(how='sum', target_how=None, step_rules=None)
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType
from typing import Any, ClassVar

from genattrib.aggregation.base import Aggregator, check_output, copy_sequence
from genattrib.aggregation.contrast import Pair
from genattrib.aggregation.hidden import HIDDEN_REDUCERS
from genattrib.aggregation.positional import Lines, Roles, Sentences, Sources, Spans, Words
from genattrib.aggregation.reduce import Normalize, Reduce
from genattrib.errors import InvalidArgumentError, UnknownNameError
from genattrib.output.attribution import FeatureAttributionOutput

__all__ = ["STEPS", "Pipeline", "aggregate", "resolve_steps"]

#: Every step name and what builds it.
STEPS: Mapping[str, Callable[..., Aggregator]] = MappingProxyType(
    {
        **{how: partial(Reduce, how) for how in HIDDEN_REDUCERS},
        "normalize": Normalize,
        "sum-to-1": partial(Normalize, "sum-to-1"),
        "max-abs": partial(Normalize, "max-abs"),
        "words": Words,
        "spans": Spans,
        "sources": Sources,
        "sentences": Sentences,
        "lines": Lines,
        "paragraphs": partial(Lines, paragraphs=True),
        "roles": Roles,
        "pair": Pair,
    }
)


@dataclass(frozen=True)
class Pipeline(Aggregator):
    """Steps applied in order; each records itself in ``provenance.aggregations``.

    Example:
        >>> Pipeline((Words(), Sentences()))(out).sequences[0].tokens
        ['The capital of France is', ' Paris.']
    """

    steps: tuple[Aggregator, ...]
    name: ClassVar[str] = "pipeline"

    def __call__(self, out: FeatureAttributionOutput) -> FeatureAttributionOutput:
        check_output(out, self.name)
        if not self.steps:
            return FeatureAttributionOutput([copy_sequence(s) for s in out.sequences], copy.deepcopy(out.provenance))
        for step in self.steps:
            out = step(out)
        return out


def _flatten(items: Any) -> Iterator[Any]:
    for item in items:
        if isinstance(item, (list, tuple)):
            yield from _flatten(item)
        else:
            yield item


def _parameters(name: str) -> set[str]:
    return set(inspect.signature(STEPS[name]).parameters)


def _parse(steps: tuple[Any, ...]) -> list[Aggregator | tuple[str, list[Any]]]:
    items = list(_flatten(steps))
    parsed: list[Aggregator | tuple[str, list[Any]]] = []
    i = 0
    while i < len(items):
        item = items[i]
        if isinstance(item, Aggregator):
            parsed.append(item)
        elif isinstance(item, str):
            if item not in STEPS:
                raise UnknownNameError("steps", item, STEPS)
            args = []
            if item == "pair" and i + 1 < len(items) and isinstance(items[i + 1], FeatureAttributionOutput):
                args, i = [items[i + 1]], i + 1
            parsed.append((item, args))
        elif isinstance(item, FeatureAttributionOutput):
            raise InvalidArgumentError(
                "steps", "a result appears without 'pair' before it", "write aggregate('pair', other)"
            )
        else:
            raise InvalidArgumentError(
                "steps",
                f"{item!r} ({type(item).__name__}) is not a step",
                f"pass step names ({', '.join(STEPS)}) or aggregator objects",
            )
        i += 1
    return parsed


def resolve_steps(*steps: Any, **kwargs: Any) -> list[Aggregator]:
    """Aggregator objects for ``steps``; each keyword argument goes to the one named step that takes it.

    Example:
        >>> resolve_steps("spans", spans=[(0, 3)])
        [Spans(how='sum', target_how=None, step_rules=None, spans=[(0, 3)], pattern=None)]
    """
    parsed = _parse(steps)
    named = [(k, item) for k, item in enumerate(parsed) if isinstance(item, tuple)]
    assigned: dict[int, dict[str, Any]] = {k: {} for k, _ in named}
    for key, value in kwargs.items():
        takers = [k for k, (name, _) in named if key in _parameters(name)]
        if not takers:
            names = ", ".join(f"'{n}'" for _, (n, _) in named) or "no named steps"
            raise InvalidArgumentError(
                key,
                f"no named step of this pipeline ({names}) takes `{key}`",
                "check the spelling, or pass an aggregator object",
            )
        if len(takers) > 1:
            raise InvalidArgumentError(
                key,
                f"`{key}` is ambiguous: {len(takers)} steps of this pipeline take it",
                "pass aggregator objects, e.g. Words(how='mean')",
            )
        assigned[takers[0]][key] = value
    resolved: list[Aggregator] = []
    for k, item in enumerate(parsed):
        if not isinstance(item, tuple):
            resolved.append(item)
            continue
        name, args = item
        if name == "pair" and not args and "other" not in assigned[k]:
            raise InvalidArgumentError(
                "pair", "'pair' needs the result to subtract", "write aggregate('pair', other) or out - other"
            )
        resolved.append(STEPS[name](*args, **assigned[k]))
    return resolved


def aggregate(out: FeatureAttributionOutput, *steps: Any, **kwargs: Any) -> FeatureAttributionOutput:
    """Apply ``steps`` to ``out`` in order (see the module docstring); ``out`` is left unchanged.

    Example:
        >>> aggregate(out, "words", Normalize("sum-to-1")).sequences[0].scores.shape
        torch.Size([2, 7])
    """
    check_output(out, "aggregate")
    resolved = resolve_steps(*steps, **kwargs)
    if not resolved:
        raise InvalidArgumentError(
            "steps", "no aggregation steps were given", f"pass step names ({', '.join(STEPS)}) or aggregator objects"
        )
    return Pipeline(tuple(resolved))(out)
