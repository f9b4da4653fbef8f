"""The console and HTML views of a context attribution: the output with its context-sensitive
tokens marked (their step-one score), and under each the context tokens that drove it (the
salient cues of step two, by ``std_weight``/``top_k``). Every token is HTML-escaped.

Example:
    >>> print(context_text(out))                                  # doctest: +SKIP
    Context-sensitive tokens (kl_divergence ≥ 0.412): ...
"""

from __future__ import annotations

import html
from typing import Any

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;line-height:1.6}"
    ".tok{white-space:pre-wrap;border-radius:3px;padding:0 1px}"
    ".sensitive{outline:2px solid #c0392b;font-weight:bold}"
    "section{border-top:1px solid #ddd;margin-top:1em}"
    "h2{font-size:1.05em}small{color:#666}"
)


def _cue_lines(out: Any, cue: Any, std_weight: float | int | None, top_k: int | None) -> list[str]:
    salient = cue.salient(std_weight, top_k)
    lines = []
    for side, tokens, scores in (
        ("input", out.input_context_tokens, cue.input_context_scores),
        ("output", out.output_context_tokens, cue.output_context_scores),
    ):
        for i in salient[side]:
            lines.append(f"    {side} context token {i:3d} {tokens[i]!r:24s} {scores[i]: .4f}")
    return lines or ["    (no salient context token)"]


def context_text(out: Any, std_weight: float | int | None = 1.0, top_k: int | None = 5) -> str:
    """The console view of a :class:`~genattrib.context.ContextAttributionOutput`."""
    marked = {cue.index for cue in out.cues}
    text = "".join(f"[{t}]" if i in marked else t for i, t in enumerate(out.output_current_tokens))
    lines = [
        f"Input context:  {out.input_context!r}",
        f"Input current:  {out.input_current!r}",
    ]
    if out.output_context is not None:
        lines.append(f"Output context: {out.output_context!r}")
    lines += [
        f"Output current: {text}",
        f"Context-sensitive tokens ({out.metric} ≥ {out.threshold:.4g}; [marked] above): {len(out.cues)}",
    ]
    for cue in out.cues:
        instead = "" if cue.contrast_token is None else f", without context: {cue.contrast_token!r}"
        lines.append(f"  token {cue.index} {cue.token!r} ({out.metric} {cue.score:.4f}{instead}); cues:")
        lines += _cue_lines(out, cue, std_weight, top_k)
    return "\n".join(lines)


def _span(token: str, weight: float, extra: str = "", title: str = "") -> str:
    rgb = "41,128,185" if weight >= 0 else "192,57,43"
    colour = f"rgba({rgb},{min(1.0, abs(weight)):.3f})"
    return (
        f'<span class="tok {extra}" style="background:{colour}" title="{html.escape(title)}">'
        f"{html.escape(token)}</span>"
    )


def context_html(out: Any, std_weight: float | int | None = 1.0, top_k: int | None = 5) -> str:
    """A self-contained page: the output with its context-sensitive tokens outlined (shaded by
    their score), and one panel per token with the context shaded by its attribution."""
    top = max([abs(s) for s in out.sensitivity_scores] or [1.0]) or 1.0
    marked = {cue.index for cue in out.cues}
    output = "".join(
        _span(t, s / top, "sensitive" if i in marked else "", f"{out.metric} {s:.4f}")
        for i, (t, s) in enumerate(zip(out.output_current_tokens, out.sensitivity_scores))
    )
    panels = []
    for cue in out.cues:
        scores = [*(cue.input_context_scores or []), *(cue.output_context_scores or [])]
        scale = max([abs(s) for s in scores] or [1.0]) or 1.0
        salient = cue.salient(std_weight, top_k)
        parts = []
        for side, tokens, values in (
            ("input", out.input_context_tokens, cue.input_context_scores or []),
            ("output", out.output_context_tokens, cue.output_context_scores or []),
        ):
            if tokens:
                spans = "".join(
                    _span(t, v / scale, "sensitive" if i in salient[side] else "", f"{v:.4f}")
                    for i, (t, v) in enumerate(zip(tokens, values))
                )
                parts.append(f"<p><small>{side} context</small><br>{spans}</p>")
        instead = "" if cue.contrast_token is None else f" (without context: {html.escape(repr(cue.contrast_token))})"
        panels.append(
            f"<section><h2>{html.escape(repr(cue.token))} at {cue.index}: {html.escape(out.metric)} "
            f"{cue.score:.4f}{instead}</h2>{''.join(parts)}</section>"
        )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>genattrib: context attribution</title>"
        f"<style>{_STYLE}</style></head><body><h1>Does the output use the context?</h1>"
        f"<p><small>input</small><br>{html.escape(out.input_current)}</p>"
        f"<p><small>output (outlined: context-sensitive, {html.escape(out.metric)} ≥ {out.threshold:.4g})</small>"
        f"<br>{output}</p>{''.join(panels)}</body></html>"
    )
