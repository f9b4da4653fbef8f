"""The provenance panel of the HTML page: a two-column table, every value escaped.

Example:
    >>> from genattrib.output import Provenance
    >>> provenance_rows(Provenance(model_name="tiny", method="saliency"))[:2]
    [('model', 'tiny'), ('method', 'saliency')]
    >>> "&lt;b&gt;" in provenance_table(Provenance(model_name="<b>"))
    True
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from genattrib.output.provenance import Provenance
from genattrib.render.captions import explains_function

__all__ = ["provenance_rows", "provenance_table"]


def _compact(value: Any) -> str:
    """Short readable text for a JSON-like value (``""`` when empty)."""
    if value is None or value == {} or value == []:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return ", ".join(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _duration(seconds: Any) -> str:
    """``0.0123`` → ``"12.3 ms"``, ``2.5`` → ``"2.5 s"``."""
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        return str(seconds)
    if abs(value) < 1:
        return f"{value * 1000:.3g} ms"
    return f"{value:.3g} s"


def _timings(timings: dict[str, Any]) -> str:
    return " · ".join(f"{phase} {_duration(v)}" for phase, v in timings.items())


def _counts(work: dict[str, Any]) -> str:
    return " · ".join(f"{name} {v:g}" if isinstance(v, (int, float)) else f"{name} {v}" for name, v in work.items())


def provenance_rows(prov: Provenance) -> list[tuple[str, str]]:
    """``(label, text)`` for every provenance field that is set, in reading order."""
    fn = prov.attributed_fn + (f" {_compact(prov.attributed_fn_args)}" if prov.attributed_fn_args else "")
    if fn and not explains_function(prov):
        fn += f" (not used by {prov.method}: its scores explain no function)"
    model = prov.model_name + (f" @ {prov.model_revision}" if prov.model_revision else "")
    versions = " · ".join(f"{k} {v}" for k, v in prov.versions.items())
    rows = [
        ("model", model),
        ("method", prov.method),
        ("method parameters", _compact(prov.method_params)),
        ("attributed function", fn),
        ("step scores", _compact(prov.step_scores)),
        ("step score merging", _compact(prov.step_score_rules)),
        ("aggregation", " → ".join(str(a) for a in getattr(prov, "aggregations", None) or [])),
        ("model class", prov.model_class),
        ("dtype", prov.dtype),
        ("devices", _compact(prov.devices)),
        ("device map", _compact(prov.device_map)),
        ("forced target", "yes" if prov.forced_target else ""),
        ("seed", "" if prov.seed is None else str(prov.seed)),
        ("generation", _compact(prov.generation_config)),
        ("versions", versions),
        ("timings", _timings(prov.timings)),
        ("model rows run", _counts(prov.work)),
        ("created", prov.created_at),
    ]
    return [(label, text) for label, text in rows if text]


def provenance_table(prov: Provenance) -> str:
    """An HTML ``<table>`` of :func:`provenance_rows` (all text escaped)."""
    rows = "".join(
        f'<tr><th scope="row">{escape(label)}</th><td>{escape(text)}</td></tr>' for label, text in provenance_rows(prov)
    )
    return f'<table class="ga-prov-table">{rows or "<tr><td>no provenance recorded</td></tr>"}</table>'
