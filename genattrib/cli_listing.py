"""The listing sub-commands ``genattrib methods`` and ``genattrib targets``.

Example::

    $ genattrib methods
    $ genattrib targets
"""

from __future__ import annotations

import importlib
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

import genattrib

__all__ = ["run_methods", "run_targets"]


def _method_details(info: dict[str, Any]) -> Text:
    """Description, then a dim line: kind, gradients or forward only, granular, parameters."""
    text = Text(str(info.get("description", "")))
    facts = []
    if info.get("kind"):
        facts.append(f"{info['kind']} method")
    if "needs_gradients" in info:
        facts.append("gradients" if info["needs_gradients"] else "forward only")
    if info.get("granular"):
        facts.append("granular (per hidden unit)")
    if info.get("parameters"):
        facts.append("parameters: " + ", ".join(str(p) for p in info["parameters"]))
    if facts:
        text.append("\n" + " · ".join(facts), style="dim")
    return text


def run_methods(console: Console) -> int:
    """``genattrib methods``: one row per registered method, its description and what it needs."""
    names = list(genattrib.list_methods())
    try:
        describe = getattr(importlib.import_module("genattrib.methods"), "describe_methods", None)
    except ImportError:
        describe = None
    rows = {d["name"]: d for d in describe()} if describe else {}
    if not rows:
        for name in names:
            console.print(Text(name))
        return 0
    table = Table(title="attribution methods", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("method", no_wrap=True, style="bold")
    table.add_column("description", ratio=1)
    for name in names + [n for n in rows if n not in names]:
        table.add_row(Text(name), _method_details(rows.get(name, {})), end_section=True)
    console.print(table)
    return 0


def run_targets(console: Console) -> int:
    """``genattrib targets``: the attributed functions and step scores, one name a line."""
    for name in genattrib.list_targets():
        console.print(Text(str(name)))
    return 0
