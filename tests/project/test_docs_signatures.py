"""docs/api.md states the real signatures: every parameter of ``load_model`` and
``AttributionModel.attribute`` (name, kind and default, in order) as ``inspect.signature`` reads
them, and a row of the argument table for each."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

import genattrib
from genattrib.models.attribution_model import AttributionModel

API = Path(__file__).resolve().parents[2] / "docs" / "api.md"
DOCUMENTED = {"genattrib.load_model": genattrib.load_model, "AttributionModel.attribute": AttributionModel.attribute}


def documented_signature(text: str, header: str) -> list[tuple[str, str, object]]:
    """(name, kind, default) of each parameter of the ``header(...)`` code block, parsed as Python."""
    match = re.search(rf"^{re.escape(header)}\((.*?)^\) ->", text, re.S | re.M)
    assert match, f"no code block {header}(...) in {API.name}"
    args = ast.parse(f"def f({match.group(1)}): pass").body[0].args
    out = []
    plain = args.posonlyargs + args.args
    for arg, default in zip(plain, [None] * (len(plain) - len(args.defaults)) + args.defaults):
        value = inspect.Parameter.empty if default is None else ast.literal_eval(default)
        out.append((arg.arg, "POSITIONAL_OR_KEYWORD", value))
    if args.vararg:
        out.append((args.vararg.arg, "VAR_POSITIONAL", inspect.Parameter.empty))
    for arg, default in zip(args.kwonlyargs, args.kw_defaults):
        out.append((arg.arg, "KEYWORD_ONLY", inspect.Parameter.empty if default is None else ast.literal_eval(default)))
    if args.kwarg:
        out.append((args.kwarg.arg, "VAR_KEYWORD", inspect.Parameter.empty))
    return out


def real_signature(fn) -> list[tuple[str, str, object]]:
    params = [p for p in inspect.signature(fn).parameters.values() if p.name != "self"]
    return [(p.name, p.kind.name, p.default) for p in params]


@pytest.mark.parametrize("header", sorted(DOCUMENTED))
def test_documented_signature_is_the_real_one(header):
    assert documented_signature(API.read_text(), header) == real_signature(DOCUMENTED[header])


@pytest.mark.parametrize("header", sorted(DOCUMENTED))
def test_every_parameter_has_a_row_in_the_table(header):
    text = API.read_text()
    table = text[text.index(f"{header}(") :].split("\n## ")[0]
    rows = set()
    for line in table.splitlines():
        if line.startswith("| `"):
            rows.update(re.findall(r"`([*\w]+)`", line.split("|")[1]))
    names = [("**" if kind == "VAR_KEYWORD" else "") + name for name, kind, _ in real_signature(DOCUMENTED[header])]
    assert [n for n in names if n not in rows] == []
