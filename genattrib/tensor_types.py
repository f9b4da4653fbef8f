"""The dimension names of genattrib's tensor annotations (jaxtyping), one meaning each.

Every name used in a ``Float[Tensor, "..."]`` (``Int``, ``Bool``) annotation of the package is
listed here; ``tests/project/test_tensor_types.py`` fails on a name that is not, so a new dimension gets
a meaning before it gets used. Numbers (``"pair 2"``), ``*`` (any leading dimensions) and ``_``
(not checked) are jaxtyping's own.

Example:
    >>> DIMENSIONS["row"]
    'a row of scores: one explained token or unit (the rows a method receives, or a model batch)'
    >>> unknown_dimensions('Float[Tensor, "row position hidden"]')
    []
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

DIMENSIONS: Mapping[str, str] = MappingProxyType(
    {
        # rows and what they explain
        "row": "a row of scores: one explained token or unit (the rows a method receives, or a model batch)",
        "rows": "any leading row dimensions (``*rows``)",
        "batch": "sequences of one generation batch",
        "generated": "generated steps of one sequence (its rows when every step is explained)",
        "step": "steps: generated tokens, or the points of a path (integrated gradients)",
        "target": "explained targets read from one shared row",
        "unit": "explained units (several steps as one row), or source units",
        "slot": "the explained slots of a row (positions whose values combine into its value)",
        "k": "rows (targets) read from one shared model row",
        "m": "slots of one explained unit",
        "ref": "planned rows (RowRef) of one batch",
        # sources
        "position": "token positions of a sequence (the columns: prompt and continuation)",
        "prompt": "positions of the prompt",
        "source": "source (encoder) positions of an encoder-decoder sequence",
        "side": "positions of one side (source or target prefix) of an encoder-decoder sequence",
        "column": "kept columns of a sparse score matrix",
        "col": "source positions moved one at a time",
        "movable": "positions a method may move (not held fixed)",
        "kept": "entries kept by top-k storage",
        "nnz": "stored (non-zero) entries of a sparse matrix",
        "rows_plus_one": "row pointers of a CSR matrix (rows + 1)",
        "word": "words (or segments) of an aggregated sequence",
        "member": "members of a merged group",
        "group": "groups of merged positions",
        # model
        "hidden": "the embedding (hidden) dimension",
        "layer_hidden": "the last dimension of a layer's output (layer methods: hidden, or e.g. an MLP's inner width)",
        "vocab": "the vocabulary",
        "layer": "transformer layers",
        "head": "attention heads",
        "query": "query positions of an attention matrix",
        # method internals
        "sample": "random samples (gradient SHAP, LIME, ReAGent, RPI)",
        "point": "points of an interpolation path",
        "point2": "points of an upscaled path",
        "cand": "candidate anchors of a discretized path",
        "anchor": "anchor words of a discretized path",
        "pair": "(row, position) pairs",
        "probe": "probe rows of a perturbation pool",
        "feature": "features of a surrogate model",
        "item": "items of a planned group",
        "n": "items of a list (any count)",
        "chunk": "rows of one chunk (a slice of model rows run at once)",
        "example": "examples of an evaluation dataset",
        "contrast": "contrast tokens",
        "distinct": "distinct values (deduplicated)",
        "rest": "the remaining entries",
        "selected": "selected rows",
        "todo": "rows still to run",
        "variant": "variants of one prompt",
        "allowed": "allowed tokens",
    }
)

_ANNOTATION = re.compile(r"\b(?:Float|Int|Bool|Shaped|Num|Integer)\[\s*[\w.]+\s*,\s*\"([^\"]*)\"\s*\]")


def dimension_names(source: str) -> set[str]:
    """The dimension names ``source``'s annotations use (without jaxtyping's ``*``, ``#``, ``_``)."""
    tokens = (re.sub(r"^[*#_]+", "", t) for shape in _ANNOTATION.findall(source) for t in shape.split())
    return {t for t in tokens if t and t != "..." and not t.isdigit()}


def unknown_dimensions(source: str) -> list[str]:
    """Dimension names used in ``source``'s annotations that :data:`DIMENSIONS` does not list."""
    return sorted(n for n in dimension_names(source) if n not in DIMENSIONS)
