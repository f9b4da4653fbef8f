"""The configured line length (pyproject.toml, ``[tool.ruff] line-length``) holds for every Python
file: ``nox -s lint`` checks it with ruff, and this test keeps CI (which runs only the tests) honest."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def configured_limit() -> int:
    match = re.search(r"^\s*line-length\s*=\s*(\d+)", (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    assert match, "pyproject.toml sets [tool.ruff] line-length"
    return int(match.group(1))


def python_files() -> list[Path]:
    folders = ("genattrib", "tests", "benchmarks", "examples", "docs")
    files = [p for folder in folders for p in sorted((ROOT / folder).rglob("*.py"))]
    return files + sorted(ROOT.glob("*.py"))


def test_no_line_exceeds_the_configured_limit() -> None:
    limit = configured_limit()
    assert limit <= 120
    too_long = [
        f"{path.relative_to(ROOT)}:{number}: {len(line)} > {limit}"
        for path in python_files()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if len(line) > limit
    ]
    assert python_files() and not too_long, "\n".join(too_long)
