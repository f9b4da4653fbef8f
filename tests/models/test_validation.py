"""genattrib.validation: the shared argument checkers (messages, bounds, bools never numbers)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genattrib.errors import InvalidArgumentError
from genattrib.validation import (
    check_choice,
    check_index_list,
    check_int,
    check_number,
    check_positive_int,
    is_int,
    is_number,
)

SETTINGS = settings(deadline=None)  # checks are instant; a loaded machine is not
NOT_INTS = st.one_of(st.booleans(), st.floats(), st.text(max_size=3), st.none(), st.lists(st.integers(), max_size=2))


def message(call) -> InvalidArgumentError:
    with pytest.raises(InvalidArgumentError) as info:
        call()
    return info.value


@SETTINGS
@given(st.integers(min_value=1))
def test_every_int_from_one_is_a_positive_int(value: int) -> None:
    check_positive_int("n", value, "n=3")


@SETTINGS
@given(st.booleans())
def test_every_bool_is_rejected_by_the_int_checks(value: bool) -> None:
    for call in (
        lambda: check_positive_int("n", value, "n=3"),
        lambda: check_int("n", value, "n=0", minimum=0),
        lambda: check_positive_int("n", value, "n=3", optional=True),
    ):
        assert message(call).argument == "n"
    assert not is_int(value) and not is_number(value)


@SETTINGS
@given(st.integers(max_value=0))
def test_zero_and_negative_ints_are_not_positive(value: int) -> None:
    err = message(lambda: check_positive_int("batch_size", value, "batch_size=8"))
    assert str(err) == f"Invalid `batch_size`: must be a positive int, got {value!r}. Fix: pass e.g. batch_size=8."


@SETTINGS
@given(NOT_INTS.filter(lambda v: v is not None))
def test_anything_but_an_int_is_rejected(value: object) -> None:
    assert message(lambda: check_positive_int("every", value, "every=2")).fix == "pass e.g. every=2"


def test_none_passes_only_when_optional() -> None:
    check_positive_int("position_chunk", None, "position_chunk=8", optional=True)
    err = message(lambda: check_positive_int("position_chunk", None, "position_chunk=8"))
    assert err.problem == "must be a positive int, got None"
    err = message(lambda: check_positive_int("position_chunk", 0, "position_chunk=8", optional=True))
    assert err.problem == "must be a positive int or None, got 0"


@SETTINGS
@given(st.integers(min_value=-50, max_value=50), st.integers(min_value=-50, max_value=50), st.integers(-60, 60))
def test_int_range_accepts_exactly_the_ints_inside(low: int, high: int, value: int) -> None:
    if low <= value <= high:
        check_int("t", value, "t=0", minimum=low, maximum=high)
    else:
        err = message(lambda: check_int("t", value, "t=0", minimum=low, maximum=high))
        assert err.problem == f"must be an int in [{low}, {high}], got {value!r}"


def test_int_messages_name_the_bounds() -> None:
    assert (
        message(lambda: check_int("n_samples", 1, "n_samples=200", minimum=2)).problem == "must be an int >= 2, got 1"
    )
    assert message(lambda: check_int("layer", 1.5, "layer=-3")).problem == "must be an int, got 1.5"
    assert message(lambda: check_int("x", 9, "x=1", maximum=4)).problem == "must be an int <= 4, got 9"


@SETTINGS
@given(st.floats(allow_nan=False), st.booleans())
def test_number_bounds_follow_the_interval(value: float, strict: bool) -> None:
    inside = 0 < value < 1 if strict else 0 <= value <= 1
    call = lambda: check_number("ratio", value, "ratio=0.3", low=0, high=1, strict=strict)  # noqa: E731
    if inside:
        call()
    else:
        expected = "(0, 1)" if strict else "[0, 1]"
        assert message(call).problem == f"must be in {expected}, got {value!r}"


@SETTINGS
@given(st.one_of(st.booleans(), st.just(math.nan), st.text(max_size=3), st.none()))
def test_bools_nan_and_non_numbers_are_never_in_range(value: object) -> None:
    message(lambda: check_number("stdevs", value, "stdevs=0.09", low=0, what="a float"))
    message(lambda: check_number("alpha", value, "alpha=1.0"))


def test_number_messages() -> None:
    assert (
        message(lambda: check_number("stdevs", -1, "stdevs=0.09", low=0, what="a float")).problem
        == "must be a float >= 0, got -1"
    )
    assert (
        message(lambda: check_number("alpha", 0.0, "alpha=1.0", low=0, strict=True)).problem == "must be > 0, got 0.0"
    )
    assert message(lambda: check_number("k", 101, "k=20", low=0, high=100, what="a percentage")).problem == (
        "must be a percentage in [0, 100], got 101"
    )
    assert message(lambda: check_number("x", "1", "x=1")).problem == "must be a number, got '1'"
    check_number("x", 10**400, "x=1", low=0)


@SETTINGS
@given(st.one_of(st.none(), st.integers(), st.lists(st.integers(), max_size=4), st.tuples(st.integers())))
def test_index_lists_accept_none_ints_and_lists_of_ints(value: object) -> None:
    check_index_list("heads", value, "heads=[-1]")


@SETTINGS
@given(st.one_of(st.booleans(), st.floats(), st.text(max_size=3), st.lists(st.booleans(), min_size=1, max_size=3)))
def test_index_lists_reject_bools_floats_and_text(value: object) -> None:
    err = message(lambda: check_index_list("layers", value, "layers=[-1]"))
    assert err.problem == f"must be an int or a list of ints, got {value!r}" and err.fix == "pass e.g. layers=[-1]"


@SETTINGS
@given(st.sampled_from(["mean", "max", "sum"]))
def test_choices_accept_each_listed_value(value: str) -> None:
    check_choice("head_reduction", value, ("mean", "max", "sum"), "reduction")


@SETTINGS
@given(st.one_of(st.text(max_size=5), st.none(), st.integers()).filter(lambda v: v not in ("mean", "max", "sum")))
def test_choices_reject_anything_else_and_list_the_choices(value: object) -> None:
    err = message(lambda: check_choice("head_reduction", value, ("mean", "max", "sum"), "reduction"))
    assert err.problem == f"unknown reduction {value!r}" and err.fix == "use one of: mean, max, sum"


def test_validation_is_a_leaf_module() -> None:
    """It may import only genattrib.errors (and the standard library)."""
    import ast
    from pathlib import Path

    import genattrib.validation as validation

    tree = ast.parse(Path(validation.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert {m for m in imported if m and m.startswith("genattrib")} <= {"genattrib.errors"}
