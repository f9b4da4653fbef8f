"""genattrib's layers and its import graph, read from the source with ``ast`` (nothing is imported).

Shared by ``tests/project/test_architecture.py`` (the layer contract) and ``docs/tools/import_table.py``
(the import table in docs/architecture.md). Standard library only.

Example:
    >>> graph = scan()
    >>> unit_of("genattrib.engine.forward"), layer_of("genattrib.engine.forward")
    ('engine', 6)
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "genattrib"
TOP = "__init__"  # the unit of the top-level package module genattrib/__init__.py

#: The layers, lowest first: a module may import its own unit and any unit of its layer or a
#: lower one. A unit is a sub-package of genattrib/ (``engine``) or a top-level module (``cli``).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "leaves",
        (
            "errors",
            "tensor_types",
            "cache",
            "seeding",
            "progress",
            "validation",
            "version",
            "devices",
            "machine",
            "data",
        ),
    ),
    ("target functions", ("targets",)),
    ("results", ("output",)),
    ("aggregation", ("aggregation",)),
    ("rendering", ("render",)),
    ("generation", ("generation",)),
    ("engine: execution and the method contract", ("engine",)),
    ("faithfulness core", ("faithfulness",)),
    ("attribution methods", ("methods",)),
    ("models", ("models",)),
    ("evaluation API, dataset runs and context attribution", ("evaluation", "dataset", "context")),
    (
        "entry points",
        (
            "cli",
            "cli_args",
            "cli_context",
            "cli_dataset",
            "cli_evaluate",
            "cli_interrupt",
            "cli_listing",
            "__main__",
            TOP,
        ),
    ),
)
LAYER = {unit: index for index, (_, units) in enumerate(LAYERS) for unit in units}


@dataclass(frozen=True)
class Import:
    """One import statement (or ``importlib.import_module("...")`` call) of one name."""

    importer: str  # dotted module name, e.g. genattrib.output.attribution
    path: str  # file, relative to the repository root
    line: int
    imported: str  # dotted module name; for genattrib, the module the name lives in
    deferred: bool  # inside a function body: runs when called, not when the module loads
    code: str  # the statement as written

    @property
    def internal(self) -> bool:
        return is_internal(self.imported)

    def __str__(self) -> str:
        where = "inside a function" if self.deferred else "at module level"
        return f"{self.path}:{self.line}: {self.code}  ({where})"


def is_internal(module: str) -> bool:
    return module == PACKAGE or module.startswith(PACKAGE + ".")


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    out = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def unit_of(module: str) -> str:
    """``genattrib.engine.forward`` -> ``engine``; ``genattrib.cli`` -> ``cli``; ``genattrib`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else TOP


def layer_of(module: str) -> int | None:
    """The layer number of a genattrib module, or None when the table does not place it."""
    return LAYER.get(unit_of(module))


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _dynamic_target(node: ast.Call) -> str | None:
    """The module of ``importlib.import_module("...")`` / ``import_module("...")`` with a literal name."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if name != "import_module" or not node.args:
        return None
    first = node.args[0]
    return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None


def _walk(node: ast.AST, deferred: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    for child in ast.iter_child_nodes(node):
        yield child, deferred
        inner = deferred or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        yield from _walk(child, inner)


def imports_of(module: str, path: Path, known: set[str], root: Path = ROOT) -> list[Import]:
    """The imports of one module file, in source order."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
    lines = source.splitlines()
    rel = path.relative_to(root).as_posix()
    out = []
    for node, deferred in _walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, path.name == "__init__.py", node)
            # ``from genattrib.output import serialization`` imports the module genattrib.output.serialization
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        elif isinstance(node, ast.Call) and (name := _dynamic_target(node)):
            targets = [name]
        code = lines[node.lineno - 1].strip() if targets else ""
        for target in dict.fromkeys(targets):
            out.append(Import(module, rel, node.lineno, target, deferred, code))
    return out


def scan(root: Path = ROOT) -> list[Import]:
    """Every import of every genattrib module."""
    files = module_files(root)
    known = set(files)
    return [imp for module, path in files.items() for imp in imports_of(module, path, known, root)]


def unit_edges(imports: list[Import]) -> dict[tuple[str, str], list[Import]]:
    """Imports between different units of genattrib, grouped by (importing unit, imported unit)."""
    edges: dict[tuple[str, str], list[Import]] = {}
    for imp in imports:
        if imp.internal and unit_of(imp.importer) != unit_of(imp.imported):
            edges.setdefault((unit_of(imp.importer), unit_of(imp.imported)), []).append(imp)
    return edges


def module_edges(imports: list[Import]) -> dict[str, set[tuple[str, str]]]:
    """Imports between two modules of the same unit, by unit: ``{"models": {(importer, imported), ...}}``.

    Every import counts: at module level, inside a function (deferred) and under
    ``if TYPE_CHECKING:`` (the scan does not tell those apart from module-level ones, on purpose:
    a type-only import is still a dependency a reader follows, and models/ hid a five-file cycle
    that way). A package's ``__init__`` is a module like the others: a module that imports its own
    package's ``__init__``, which imports the module back, is a cycle.
    """
    out: dict[str, set[tuple[str, str]]] = {}
    for imp in imports:
        if imp.internal and imp.importer != imp.imported and unit_of(imp.importer) == unit_of(imp.imported):
            out.setdefault(unit_of(imp.importer), set()).add((imp.importer, imp.imported))
    return out


def find_cycle(edges: set[tuple[str, str]]) -> list[str] | None:
    """One cycle of the directed graph as a closed path ``[a, b, ..., a]``, or None."""
    graph: dict[str, list[str]] = {}
    for a, b in sorted(edges):
        graph.setdefault(a, []).append(b)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def display(unit: str) -> str:
    """How the docs name a unit: ``engine/``, ``cli.py``, ``__init__.py`` (the top-level package)."""
    if unit == TOP:
        return "`genattrib/__init__.py`"
    return f"`{unit}/`" if (ROOT / PACKAGE / unit).is_dir() else f"`{unit}.py`"


def _names(units: dict[str, bool]) -> str:
    """Units in layer order; ``(deferred)`` when every import along that edge is inside a function."""
    if not units:
        return "—"
    ordered = sorted(units, key=lambda u: (LAYER.get(u, len(LAYERS)), u))
    return ", ".join(display(u) + (" (deferred)" if units[u] else "") for u in ordered)


def markdown_table(imports: list[Import]) -> str:
    """The table for docs/architecture.md: one row per unit, layers top (highest) to bottom."""
    edges = unit_edges(imports)
    deferred = {edge: all(i.deferred for i in found) for edge, found in edges.items()}
    present = {unit_of(i.importer) for i in imports} | {unit_of(m) for m in module_files()}
    rows = ["| layer | package | imports (inside genattrib) | imported by |", "|---|---|---|---|"]
    for index in reversed(range(len(LAYERS))):
        for unit in sorted(u for u in LAYERS[index][1] if u in present):
            uses = {b: d for (a, b), d in deferred.items() if a == unit}
            used_by = {a: d for (a, b), d in deferred.items() if b == unit}
            rows.append(f"| {index} | {display(unit)} | {_names(uses)} | {_names(used_by)} |")
    return "\n".join(rows) + "\n"


DOC = ROOT / "docs" / "architecture.md"
BEGIN = "<!-- import-table:begin (generated by docs/tools/import_table.py --write) -->"
END = "<!-- import-table:end -->"


def table_in(doc: str) -> str:
    """The text between the import-table markers of ``doc``."""
    if doc.count(BEGIN) != 1 or doc.count(END) != 1 or doc.index(BEGIN) > doc.index(END):
        raise ValueError(f"expected one {BEGIN!r} ... {END!r} block")
    return doc.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def with_table(doc: str, table: str) -> str:
    """``doc`` with the text between the import-table markers replaced by ``table``."""
    table_in(doc)  # checks the markers
    head, rest = doc.split(BEGIN, 1)
    return f"{head}{BEGIN}\n{table.rstrip()}\n{END}{rest.split(END, 1)[1]}"
