"""Checks of user arguments, shared by every public entry point (a leaf: imports only errors).

Each checker raises :class:`~genattrib.errors.InvalidArgumentError` naming the argument, what
was wrong and a fix (``pass e.g. <example>``); bools are never accepted as numbers.

Example:
    >>> check_positive_int("n_steps", 0, "n_steps=50")
    Traceback (most recent call last):
    ...
    genattrib.errors.InvalidArgumentError: Invalid `n_steps`: must be a positive int, got 0. Fix: pass e.g. n_steps=50.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from genattrib.errors import InvalidArgumentError


def is_int(value: object) -> bool:
    """Whether ``value`` is an ``int`` (a ``bool`` is not).

    Example:
        >>> is_int(3), is_int(True), is_int(3.0)
        (True, False, False)
    """
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """Whether ``value`` is an ``int`` or a ``float`` (a ``bool`` is not).

    Example:
        >>> is_number(0.5), is_number(2), is_number(False), is_number("0.5")
        (True, True, False, False)
    """
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _bounds(low: int | float | None, high: int | float | None, strict: bool) -> str:
    """``"in [0, 1]"``, ``"in (0, 1)"``, ``">= 0"``, ``"< 1"`` ... (empty without bounds)."""
    show = lambda v: str(v) if is_int(v) else f"{v:g}"  # noqa: E731 - ints in full (2**63 - 1 is not 9.2e+18)
    if low is not None and high is not None:
        return f"in {'(' if strict else '['}{show(low)}, {show(high)}{')' if strict else ']'}"
    if low is not None:
        return f"{'>' if strict else '>='} {show(low)}"
    if high is not None:
        return f"{'<' if strict else '<='} {show(high)}"
    return ""


def check_int(
    name: str,
    value: object,
    example: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    optional: bool = False,
) -> None:
    """Raise unless ``value`` is an int in ``[minimum, maximum]`` (or None, when ``optional``).

    Example:
        >>> check_int("factor", 3, "factor=1", minimum=0)
        >>> check_int("noise_t", 501, "noise_t=500", minimum=0, maximum=500)
        Traceback (most recent call last):
        ...
        genattrib.errors.InvalidArgumentError: Invalid `noise_t`: must be an int in [0, 500], got 501. Fix: ...
    """
    if value is None and optional:
        return
    if not is_int(value) or (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        kind = (
            "a positive int"
            if minimum == 1 and maximum is None
            else f"an int {_bounds(minimum, maximum, False)}".rstrip()
        )
        raise InvalidArgumentError(
            name, f"must be {kind}{' or None' if optional else ''}, got {value!r}", f"pass e.g. {example}"
        )


def check_positive_int(name: str, value: object, example: str, *, optional: bool = False) -> None:
    """Raise unless ``value`` is an int >= 1 (or None, when ``optional``).

    Example:
        >>> check_positive_int("batch_size", None, "batch_size=8", optional=True)
        >>> check_positive_int("every", True, "every=2")
        Traceback (most recent call last):
        ...
        genattrib.errors.InvalidArgumentError: Invalid `every`: must be a positive int, got True. Fix: ...
    """
    check_int(name, value, example, minimum=1, optional=optional)


def check_number(
    name: str,
    value: object,
    example: str,
    *,
    low: int | float | None = None,
    high: int | float | None = None,
    strict: bool = False,
    what: str = "",
) -> None:
    """Raise unless ``value`` is an int or float between ``low`` and ``high`` (bounds excluded
    when ``strict``; NaN is never inside). ``what`` names the kind in the message.

    Example:
        >>> check_number("keep_prob", 0.5, "keep_prob=0.5", low=0, high=1, strict=True)
        >>> check_number("k", 120, "k=20", low=0, high=100, what="a percentage")
        Traceback (most recent call last):
        ...
        genattrib.errors.InvalidArgumentError: Invalid `k`: must be a percentage in [0, 100], got 120. Fix: ...
    """
    inside = is_number(value) and not (isinstance(value, float) and math.isnan(value))
    if inside and low is not None:
        inside = value > low if strict else value >= low
    if inside and high is not None:
        inside = value < high if strict else value <= high
    if not inside:
        kind = " ".join(part for part in (what, _bounds(low, high, strict)) if part) or "a number"
        raise InvalidArgumentError(name, f"must be {kind}, got {value!r}", f"pass e.g. {example}")


def check_index_list(name: str, value: object, example: str) -> None:
    """Raise unless ``value`` is None, an int or a list/tuple of ints (indices to select).

    Example:
        >>> check_index_list("heads", [0, -1], "heads=[-1]")
        >>> check_index_list("layers", "last", "layers=[-1]")
        Traceback (most recent call last):
        ...
        genattrib.errors.InvalidArgumentError: Invalid `layers`: must be an int or a list of ints, got 'last'. Fix: ...
    """
    if value is None or is_int(value):
        return
    if not isinstance(value, (list, tuple)) or not all(is_int(i) for i in value):
        raise InvalidArgumentError(name, f"must be an int or a list of ints, got {value!r}", f"pass e.g. {example}")


def check_choice(name: str, value: object, choices: Sequence[str], what: str = "value") -> None:
    """Raise unless ``value`` is one of ``choices``; ``what`` names the kind in the message.

    Example:
        >>> check_choice("distance", "cosine", ("prob_drop", "distribution"), "distance")
        Traceback (most recent call last):
        ...
        genattrib.errors.InvalidArgumentError: Invalid `distance`: unknown distance 'cosine'. Fix: ...
    """
    if value not in choices:
        raise InvalidArgumentError(name, f"unknown {what} {value!r}", f"use one of: {', '.join(choices)}")
