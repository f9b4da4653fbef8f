"""The generated API reference (docs/reference/, built by ``nox -s docs``) covers the public API: every
name of ``genattrib.__all__`` has a ``::: genattrib.NAME`` directive, every directive names an object
that exists, and every reference page is in the site's navigation. The build itself (strict mode:
links, anchors, cross-references, docstrings) is ``nox -s docs``."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import genattrib

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "reference"
DIRECTIVE = re.compile(r"^::: ([\w.]+)\s*$", re.M)


def _directives() -> dict[str, str]:
    """Each documented object's dotted path -> the page that documents it."""
    found: dict[str, str] = {}
    for page in sorted(REFERENCE.glob("*.md")):
        for path in DIRECTIVE.findall(page.read_text(encoding="utf-8")):
            assert path not in found, f"{path} is documented twice ({found[path]} and {page.name})"
            found[path] = page.name
    return found


def _resolve(path: str) -> object:
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise AssertionError(f"no module in {path}")


def test_every_public_name_has_a_reference_entry() -> None:
    documented = _directives()
    missing = sorted(name for name in genattrib.__all__ if f"genattrib.{name}" not in documented)
    assert not missing, f"add `::: genattrib.NAME` to a page of docs/reference/ for {missing}"


def test_every_reference_entry_names_a_real_object() -> None:
    documented = _directives()
    assert len(documented) >= len(genattrib.__all__)
    for path in documented:
        assert _resolve(path) is not None, path


def test_every_reference_page_is_in_the_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for page in REFERENCE.glob("*.md"):
        assert f"reference/{page.name}" in nav, f"add reference/{page.name} to the nav of mkdocs.yml"
