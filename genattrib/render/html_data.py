"""The data block of an HTML page: tokens as safe JSON, scores as base64 (html_rows.py).

Each sequence's scores are exact float16 (base64, zlib for large matrices), or, for matrices
too big for a page, the top ``k`` sources per row, 8-bit quantised; the page then says so
(:mod:`genattrib.render.html_rows`). Step scores are float32 (ranks can exceed float16's range).
With the scores come the outline's units and sums over the sentences of the text
(:mod:`genattrib.render.units`).

The JSON is safe inside ``<script type="application/json">``: ``<``, ``>``, ``&``, U+2028/9 and
lone surrogates are written as ``\\uXXXX`` escapes, so no token can close the script element or
open a comment.

Example:
    >>> import torch
    >>> spec = encode_scores(torch.tensor([[1.5, float("nan")]]), compress=False)
    >>> spec["codec"], spec["shape"], decode_scores(spec).tolist()
    ('f16le', [1, 2], [[1.5, nan]])
    >>> script_json(["</script>"])
    '["\\\\u003c/script\\\\u003e"]'
"""

from __future__ import annotations

import base64
import json
import math
import re
from typing import Any

import numpy as np
import torch
from torch import Tensor

from genattrib.aggregation.merge import runs_from_starts
from genattrib.output.attribution import FeatureAttributionOutput
from genattrib.output.sequence import SequenceAttribution
from genattrib.render.captions import check_scale, score_caption
from genattrib.render.colors import BLUE, ORANGE, WHITE, ColorScale
from genattrib.render.html_rows import (
    COMPRESS_ABOVE_BYTES,
    SUMS_DENSE_MAX_CELLS,
    decode_scores,
    encode_matrix,
    encode_scores,
)
from genattrib.render.units import CHUNK_ROWS, group_sums, outline_units, source_groups, top_sources, unit_scores

__all__ = [
    "COMPRESS_ABOVE_BYTES",
    "FORMAT",
    "decode_scores",
    "decode_step_scores",
    "encode_scores",
    "output_payload",
    "script_json",
    "sequence_payload",
]

FORMAT = "genattrib-html/3"  # 2: top-k codec, outline units, sentence sums; 3: caption, scale, hidden
_UNSAFE_IN_SCRIPT = re.compile("[<>&\u2028\u2029\ud800-\udfff]")


def script_json(value: Any) -> str:
    """Compact JSON that can sit inside ``<script type="application/json">`` unchanged.

    Example:
        >>> script_json({"a": "<!--"})
        '{"a":"\\\\u003c!--"}'
    """
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return _UNSAFE_IN_SCRIPT.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _encode_step_scores(values: Tensor) -> str:
    return base64.b64encode(values.detach().to("cpu", torch.float32).numpy().astype("<f4").tobytes()).decode("ascii")


def decode_step_scores(data: str) -> np.ndarray:
    """The float32 values of one step score in the data block.

    Example:
        >>> seq = model.attribute(prompt, target=" Paris.", step_scores=["probability"]).sequences[0]
        >>> decode_step_scores(sequence_payload(seq)["step_scores"]["probability"]).shape
        (3,)
    """
    return np.frombuffer(base64.b64decode(data), dtype="<f4").copy()


def _runs(labels: list[str]) -> list[list[Any]]:
    """``["a", "a", "b"]`` → ``[[0, "a"], [2, "b"]]`` (start of every run of equal labels)."""
    return [[i, label] for i, label in enumerate(labels) if i == 0 or labels[i - 1] != label]


def _scale(values: Tensor, left_out: Tensor | None = None) -> dict[str, Any]:
    """``{"kind", "vmax"}`` of :class:`ColorScale` for ``values``, read in row chunks: the kind
    of all of them, the extent of the columns not ``left_out`` (of all when those hold no
    non-zero finite score)."""
    whole = _scale_of(values, None)
    if left_out is not None and bool(left_out.any()):
        kept = _scale_of(values, left_out.to(values.device))
        if kept["vmax"] > 0:
            return {"kind": whole["kind"], "vmax": kept["vmax"]}
    return whole


def _scale_of(values: Tensor, left_out: Tensor | None) -> dict[str, Any]:
    lo, hi = math.inf, -math.inf
    for r0 in range(0, values.shape[0], CHUNK_ROWS):
        chunk = values[r0 : r0 + CHUNK_ROWS].detach().float()
        if left_out is not None:
            chunk = chunk.masked_fill(left_out, math.nan)
        if chunk.numel():
            inf = math.inf
            lo = min(lo, float(chunk.nan_to_num(nan=inf, posinf=inf, neginf=inf).min()))
            hi = max(hi, float(chunk.nan_to_num(nan=-inf, posinf=-inf, neginf=-inf).max()))
    scale = ColorScale.fit(torch.tensor([lo, hi] if lo <= hi else [], dtype=torch.float64))
    return {"kind": scale.kind, "vmax": scale.vmax if math.isfinite(scale.vmax) else 0.0}


def _unit_name(seq: SequenceAttribution, explain: str) -> str:
    """What one outline unit is called: ``"sentence"`` for token-level results, else the unit."""
    if not seq.is_unit_level:
        return "sentence"
    return explain[:-1] if explain.endswith("s") and explain != "tokens" else "unit"


def _group_name(seq: SequenceAttribution) -> str:
    """What the page's source groups are: the result's source units, or sentences."""
    return "source unit" if seq.source_spans is not None else "source sentence"


def _notes(seq: SequenceAttribution, specs: dict[str, dict[str, Any]], unit: str) -> list[str]:
    """Visible notes on what the page leaves out or rounds for this sequence."""
    n = len(seq.tokens)
    row = unit if seq.is_unit_level else "generated token"
    names = {"scores": f"{row} rows over tokens", "unit_scores": f"{unit} rows over tokens"}
    names["group_scores"] = f"{unit} rows over {_group_name(seq)}s"
    cut = [(names[key], spec["k"]) for key, spec in specs.items() if spec["codec"] == "topk-q8-zlib"]
    if not cut:
        return []
    kept = "; ".join(f"{what}: top {k}" for what, k in cut)
    notes = [
        f"Showing the top-k sources per row by |score| ({kept}; {n:,} tokens in all). The |score| "
        "of the sources left out is given per row. Scores quantised to 8 bits per row."
    ]
    if specs["scores"]["codec"] == "topk-q8-zlib":
        instead = (
            "no heatmap is drawn."
            if specs["group_scores"]["codec"] == "topk-q8-zlib"
            else f"the matrix shows {unit}s × {_group_name(seq)}s instead."
        )
        notes.append(f"The token heatmap ({seq.num_steps:,} × {n:,}) is too big to draw: {instead}")
    return notes


def sequence_payload(
    seq: SequenceAttribution,
    *,
    compress: bool | None = None,
    top_k: int | str | None = "auto",
    explain: str = "tokens",
    include_special_tokens: bool = False,
) -> dict[str, Any]:
    """Everything the page's script needs about one sequence (JSON-serialisable).

    Besides the tokens and scores: the outline's units (:mod:`genattrib.render.units`) with their
    top source words (their top source units, for a result attributed with ``sources=``), the
    starts of the source groups (:func:`~genattrib.render.units.source_groups`: the source units,
    else the sentences of the text) and every unit's row summed over those groups. A token-level
    result's sentence rows (sums of its token rows) are stored only when the token rows are top-k;
    the page sums exact rows itself. ``hidden`` lists the special and
    chat-template positions (``seq.structure_mask``); unless ``include_special_tokens`` they are
    left out of the top words and of the colour scales (``scale``, ``group_scale``, ``unit_scale``).

    Example:
        >>> entry = sequence_payload(out.sequences[0])
        >>> entry["scale"]
        {'kind': 'sequential', 'vmax': ...}
        >>> entry["units"]["name"], entry["units"]["spans"]
        ('sentence', [[6, 9]])
    """
    mask = seq.held_fixed.tolist() if seq.held_fixed is not None else []
    step_scores = {
        str(name): _encode_step_scores(values)
        for name, values in seq.step_scores.items()
        if values.ndim == 1 and values.shape[0] == seq.num_steps
    }
    units = outline_units(seq)
    rows = unit_scores(seq, units)
    starts, _ = source_groups(seq)  # the source units a result records, else the sentences
    sums = group_sums(rows, units.limits, starts)
    structure = seq.structure_mask
    hidden = None if include_special_tokens else structure
    hidden_groups = (
        None
        if hidden is None
        else torch.stack([hidden[a:b].all() for a, b in runs_from_starts(starts, len(seq.tokens))])
    )
    specs = {
        "scores": encode_matrix(seq.scores, top_k=top_k, compress=compress),
        "group_scores": encode_matrix(sums, top_k=top_k, compress=compress, dense_max=SUMS_DENSE_MAX_CELLS),
    }
    if units.merged and specs["scores"]["codec"] == "topk-q8-zlib":  # else the page sums the exact rows itself
        specs["unit_scores"] = encode_matrix(rows, top_k=specs["scores"]["k"])
    name = _unit_name(seq, explain)
    return {
        "tokens": [str(t) for t in seq.tokens],
        "prompt_length": seq.prompt_length,
        "step_start": seq.step_start,
        "steps": seq.num_steps,
        "spans": [list(span) for span in seq.target_spans] if seq.target_spans is not None else None,
        "special": [i for i, special in enumerate(mask) if special],
        "hidden": structure.nonzero().flatten().tolist(),
        "roles": _runs(list(seq.token_roles)) if seq.token_roles is not None else None,
        "generated_text": seq.generated_text,
        "scale": _scale(seq.scores, hidden),
        "scores": specs["scores"],
        "step_scores": step_scores,
        "units": {
            "name": name,
            "spans": [list(span) for span in units.spans],
            "rows": [list(r) for r in units.rows],
            "limits": units.limits,
            "merged": units.merged,
            "top": [
                [list(source) for source in sources]
                for sources in top_sources(
                    seq,
                    rows,
                    units.limits,
                    include_special_tokens=include_special_tokens,
                    starts=None if seq.source_spans is None else starts,  # top units, else top words
                )
            ],
        },
        "unit_scores": specs.get("unit_scores"),
        "unit_scale": _scale(rows, hidden) if units.merged else None,
        "groups": starts,
        "group_name": _group_name(seq),
        "group_scores": specs["group_scores"],
        "group_scale": _scale(sums, hidden_groups),
        "notes": _notes(seq, specs, name),
    }


def output_payload(
    out: FeatureAttributionOutput,
    *,
    compress: bool | None = None,
    top_k: int | str | None = "auto",
    scale: str = "step",
    include_special_tokens: bool = False,
) -> dict[str, Any]:
    """The whole data block: colours, what the scores are (``caption``), the colour scale the
    page starts with (``scale``: ``"step"`` or ``"global"``), whether special and template tokens
    are ranked (``include_special``) and every sequence.

    Example:
        >>> output_payload(out)["format"]
        'genattrib-html/3'
    """
    prov = out.provenance
    return {
        "format": FORMAT,
        "colors": {"negative": list(BLUE), "zero": list(WHITE), "positive": list(ORANGE)},
        "method": prov.method,
        "attributed_fn": prov.attributed_fn,
        "caption": score_caption(prov),
        "scale": check_scale(scale),
        "include_special": include_special_tokens,
        "explain": prov.explain,
        "sequences": [
            sequence_payload(
                seq, compress=compress, top_k=top_k, explain=prov.explain, include_special_tokens=include_special_tokens
            )
            for seq in out.sequences
        ],
    }
