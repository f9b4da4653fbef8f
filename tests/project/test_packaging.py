"""What the wheel ships: every file of the package that is not Python source is declared as package
data, and the package is marked typed (PEP 561). ``nox -s package`` builds and installs the real wheel.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest

import genattrib

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "genattrib"


def _package_data() -> dict[str, list[str]]:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)["tool"]["setuptools"]["package-data"]


def _declared(path: Path, package_data: dict[str, list[str]]) -> bool:
    """Whether a package-data glob of the nearest declared package matches ``path``."""
    for package, globs in package_data.items():
        base = ROOT.joinpath(*package.split("."))
        if base in path.parents and any(fnmatch.fnmatch(path.relative_to(base).as_posix(), g) for g in globs):
            return True
    return False


def test_every_data_file_of_the_package_is_declared() -> None:
    data = [
        p
        for p in PACKAGE.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    ]
    assert {p.name for p in data} >= {"py.typed", "viewer.js", "viewer.css", "longra.json"}
    missing = [p.relative_to(ROOT).as_posix() for p in data if not _declared(p, _package_data())]
    assert not missing, f"add these to [tool.setuptools.package-data] in pyproject.toml: {missing}"


def test_the_package_is_marked_typed() -> None:
    assert (Path(genattrib.__file__).parent / "py.typed").is_file()
    assert "py.typed" in _package_data()["genattrib"]
