"""One self-contained HTML page (or notebook fragment) showing a result.

The page holds its CSS and JavaScript inline (``genattrib/render/assets/``) and the data once,
in a ``<script type="application/json">`` block (:mod:`genattrib.render.html_data`). It makes
no network request: the full page carries a Content-Security-Policy that forbids every source
except its own inline script and style (by hash). Every token is put on the page by the script
with ``textContent``; the little HTML written here (titles, the sequence selector, the
provenance panel) is escaped.

Views: the text as written (hover, focus or click a generated token to shade its sources;
j/k or ←/→ move between them; a search box finds text), an outline of the units (sentences, or
the rows of a unit-level result) with their top source words (their top source units, for a
result attributed with ``sources=``), the heatmap on a ``<canvas>``, the step scores as a bar
under each generated token, and the provenance panel. A switch reads the result by tokens or by
sentences (sentence rows summed from token rows; or, for a unit-level result, its units over the
source units, else over the sentences of the text). Long results keep the top ``k`` sources per
row, 8-bit quantised (:mod:`genattrib.render.html_rows`), and the page says so.

Example:
    >>> out.save_html("paris.html")
    PosixPath('paris.html')
    >>> fragment = to_html(out, embedded=True)
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from html import escape
from importlib.resources import files
from pathlib import Path
from typing import Any

from genattrib.errors import InvalidArgumentError
from genattrib.output.attribution import FeatureAttributionOutput
from genattrib.output.serialization import atomic_write_bytes
from genattrib.render.captions import check_include_special, check_scale
from genattrib.render.html_data import output_payload, script_json
from genattrib.render.html_provenance import provenance_table
from genattrib.render.tokens import display_token

__all__ = ["save_html", "to_html"]

_SELECT_LABEL_CHARS = 60


def _asset(name: str) -> str:
    """Text of a file in ``genattrib/render/assets`` (package data)."""
    return files("genattrib.render").joinpath("assets").joinpath(name).read_text(encoding="utf-8")


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def _default_title(out: FeatureAttributionOutput) -> str:
    prov = out.provenance
    parts = [p for p in (prov.model_name, prov.method) if p]
    return "genattrib" + (": " + " · ".join(parts) if parts else "")


def _check_id(element_id: str) -> str:
    if not element_id or not all(c.isascii() and (c.isalnum() or c in "-_") for c in element_id):
        raise InvalidArgumentError(
            "element_id", f"{element_id!r} is not a plain HTML id", "use letters, digits, - and _"
        )
    if not element_id[0].isalpha():
        raise InvalidArgumentError(
            "element_id", f"{element_id!r} does not start with a letter", "start it with a letter"
        )
    return element_id


def _sequence_selector(out: FeatureAttributionOutput, uid: str) -> str:
    """A ``<select>`` of the sequences (hidden when there is only one)."""
    options = []
    for i, seq in enumerate(out.sequences):
        text = display_token(
            " ".join((seq.generated_text or "".join(seq.generated_tokens)).split()), _SELECT_LABEL_CHARS
        )
        options.append(f'<option value="{i}">#{i} {escape(text)}</option>')
    hidden = "" if len(out.sequences) > 1 else " hidden"
    return (
        f'<label class="ga-control"{hidden}>Sequence <select class="ga-seq" id="{uid}-seq">'
        f"{''.join(options)}</select></label>"
    )


NORM_LABEL = "scale each step to its own maximum"
TEXT_HINT = (
    "hover, focus or click a generated token (or unit) to shade what it drew on · j/k or ←/→ move · "
    "Home/End · click or Enter pins · Esc releases · / finds · u switches level"
)
MATRIX_HINT = "rows: generated tokens · columns: source tokens · click a row to pin its step"
OUTLINE_HINT = "click a unit to shade what it drew on"
ASSETS = ("paint.js", "decode.js", "heatmap.js", "reader.js", "viewer.js")  # joined in this order


def _levels(uid: str) -> str:
    """The level switch: the result's own rows, or units (sentences)."""
    radios = "".join(
        f'<label><input type="radio" class="ga-level" name="{uid}-level" value="{value}"{checked}> {label}</label>'
        for value, label, checked in (("token", "tokens", " checked"), ("unit", "sentences", ""))
    )
    return (
        f'<span class="ga-control ga-levels" role="radiogroup"><span class="ga-level-what">Rows</span> {radios}</span>'
    )


def _find(uid: str) -> str:
    return (
        f'<div class="ga-find"><input type="search" class="ga-search" id="{uid}-find" placeholder="Find in the text" '
        'aria-label="find in the text" autocomplete="off">'
        '<button type="button" class="ga-prev" aria-label="previous match">&#8593;</button>'
        '<button type="button" class="ga-next" aria-label="next match">&#8595;</button>'
        '<span class="ga-count" aria-live="polite"></span></div>'
    )


def _body(out: FeatureAttributionOutput, uid: str, title: str, per_step: bool = True) -> str:
    """The root element: controls, empty views the script fills, the provenance panel."""
    checked = " checked" if per_step else ""
    return f"""<div class="genattrib" id="{uid}">
<header class="ga-head"><h2 class="ga-title">{escape(title)}</h2>
<div class="ga-controls">{_sequence_selector(out, uid)}
{_levels(uid)}
<label class="ga-control" hidden>Bars <select class="ga-bars" id="{uid}-bars"></select></label>
<label class="ga-control"><input type="checkbox" class="ga-norm" id="{uid}-norm"{checked}> {NORM_LABEL}</label>
</div></header>
<p class="ga-nojs">The interactive view needs JavaScript (in a notebook: trust it, or open the saved page).</p>
<p class="ga-summary"></p>
<div class="ga-notes" hidden></div>
<div class="ga-legend"></div>
<div class="ga-reader">
<section class="ga-panel ga-outline-panel" hidden><h3>Outline <span class="ga-hint">{OUTLINE_HINT}</span></h3>
<p class="ga-outline-head"></p><ol class="ga-outline"></ol></section>
<section class="ga-panel ga-text-panel"><h3>Text <span class="ga-hint">{TEXT_HINT}</span></h3>
{_find(uid)}
<div class="ga-text" role="group" aria-label="tokens"></div>
<div class="ga-status" aria-live="polite"></div></section>
</div>
<section class="ga-panel"><h3>Matrix <span class="ga-hint">{MATRIX_HINT}</span>
<span class="ga-hint ga-matrix-note"></span></h3>
<div class="ga-matrix"><canvas class="ga-canvas"></canvas><canvas class="ga-overlay"></canvas></div>
<div class="ga-readout">&#8203;</div></section>
<details class="ga-panel ga-prov" open><summary>Provenance</summary>{provenance_table(out.provenance)}</details>
<div class="ga-tip" role="tooltip" hidden></div>
</div>"""


def to_html(
    out: FeatureAttributionOutput,
    *,
    embedded: bool = False,
    title: str | None = None,
    element_id: str | None = None,
    compress: bool | None = None,
    top_k: int | str | None = "auto",
    scale: str = "step",
    include_special_tokens: bool = False,
) -> str:
    """The page (or, with ``embedded=True``, a fragment for notebooks) showing ``out``.

    Args:
        embedded: a ``<div>`` with its style and script, no ``<html>``/``<body>``; ids are
            unique per call, so several fragments can share one notebook page.
        title: heading and ``<title>`` (default: ``genattrib: <model> · <method>``).
        element_id: id of the root element (default: ``"genattrib"`` for a page, a random id
            for a fragment); letters, digits, ``-`` and ``_``.
        compress: zlib-compress the scores (default: only matrices above 64 KiB of float16).
        top_k: ``"auto"`` keeps the scores exact (float16) up to 5,000,000 cells per matrix and
            above that only the 64 largest ``|score|`` per row, 8-bit quantised (the page says
            so); an int keeps that many per row; ``None`` always keeps every score.
        scale: the colour scale the page starts with: ``"step"`` (each step, or unit, against
            its own largest ``|score|``) or ``"global"`` (the sequence's largest); a switch on the
            page changes it and the legend says which is used.
        include_special_tokens: rank special tokens and chat-template text like other tokens in
            the top lists and colour scales; by default they are left out there (their scores
            are still shown).

    Example:
        >>> page = to_html(out, title="Paris")
        >>> page.startswith("<!DOCTYPE html>")
        True
    """
    if element_id is None:
        element_id = "ga-" + secrets.token_hex(6) if embedded else "genattrib"
    uid = _check_id(element_id)
    if top_k not in ("auto", None) and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise InvalidArgumentError("top_k", f"top_k={top_k!r} keeps no source", "pass 'auto', None or an int >= 1")
    check_scale(scale)
    check_include_special(include_special_tokens)
    title = _default_title(out) if title is None else str(title)
    payload = output_payload(
        out, compress=compress, top_k=top_k, scale=scale, include_special_tokens=include_special_tokens
    )
    data = script_json(payload)
    style = _asset("viewer.css")
    code = "\n".join(_asset(name) for name in ASSETS)
    script = f'(function () {{\n"use strict";\n{code}\nmount(document.getElementById("{uid}"));\n}})();'
    fragment = (
        f"<style>{style}</style>\n{_body(out, uid, title, per_step=scale == 'step')}\n"
        f'<script type="application/json" class="ga-data" id="{uid}-data">{data}</script>\n'
        f"<script>{script}</script>\n"
    )
    if embedded:
        return fragment
    csp = f"default-src 'none'; script-src {_csp_hash(script)}; style-src {_csp_hash(style)}"
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="generator" content="genattrib">\n'
        f"<title>{escape(title)}</title>\n</head>\n<body>\n{fragment}</body>\n</html>\n"
    )


def save_html(out: FeatureAttributionOutput, path: str | Path, **kwargs: Any) -> Path:
    """Write :func:`to_html` to ``path`` (UTF-8) and return the path.

    Example:
        >>> save_html(out, "artifacts/paris.html")
        PosixPath('artifacts/paris.html')
    """
    path = Path(path)
    if path.is_dir():
        raise InvalidArgumentError("path", f"{path} is a folder", "give a file name such as page.html")
    atomic_write_bytes(path, to_html(out, **kwargs).encode("utf-8"))  # a failed write keeps the old page
    return path
