"""Every dimension name in the package's annotations has a meaning in genattrib/tensor_types.py."""

from __future__ import annotations

from pathlib import Path

import genattrib
from genattrib.tensor_types import DIMENSIONS, dimension_names, unknown_dimensions

PACKAGE = Path(genattrib.__file__).parent


def test_every_annotation_uses_listed_dimension_names() -> None:
    unknown = {
        str(path.relative_to(PACKAGE)): names
        for path in sorted(PACKAGE.rglob("*.py"))
        if (names := unknown_dimensions(path.read_text()))
    }
    assert not unknown, f"dimension names without a meaning in genattrib/tensor_types.py: {unknown}"


def test_an_unlisted_name_is_reported() -> None:
    assert unknown_dimensions('x: Float[Tensor, "row wibble hidden"]') == ["wibble"]
    assert unknown_dimensions('x: Int[Tensor, "*rows m"], y: Int[Tensor, "pair 2"]') == []


def test_listed_names_are_used() -> None:
    """The list holds no name that no annotation uses (it would no longer be the package's words)."""
    sources = (path.read_text() for path in PACKAGE.rglob("*.py") if path.name != "tensor_types.py")
    used = set().union(*(dimension_names(source) for source in sources))
    unused = sorted(set(DIMENSIONS) - used)
    assert not unused, f"listed in tensor_types.py but used by no annotation: {unused}"
