"""Running-text views: one explained step over its source text, and a compact summary.

Example:
    >>> seq = out.sequences[0]
    >>> lines = step_view(seq, 2, ColorScale.fit(seq.scores), NumberFormat())
"""

from __future__ import annotations

import math

import torch
from rich.console import RenderableType
from rich.style import Style
from rich.text import Text

from genattrib.errors import InvalidArgumentError
from genattrib.output.sequence import SequenceAttribution
from genattrib.render.captions import left_out
from genattrib.render.colors import ColorScale, NumberFormat
from genattrib.render.tokens import display_token, text_token

__all__ = ["compact_view", "long_hint", "resolve_step", "step_view"]

TOP_K = 5
PROMPT_TAIL_CELLS = 400
_TARGET_STYLE = Style(bold=True, underline=True, reverse=True)


def resolve_step(seq: SequenceAttribution, step: int, index: int = 0) -> int:
    """Row of ``seq.scores`` for ``step`` (negative counts from the end); error if out of range.

    Example:
        >>> seq = out.sequences[0]
        >>> resolve_step(seq, -1) == seq.num_steps - 1
        True
    """
    if not -seq.num_steps <= step < seq.num_steps:
        raise InvalidArgumentError(
            "step",
            f"step {step} is out of range for sequence {index}, which has {seq.num_steps} explained steps",
            f"pass 0 <= step < {seq.num_steps} (or a negative index)" if seq.num_steps else "explain at least one step",
        )
    return step % seq.num_steps


def _step_score_note(seq: SequenceAttribution, row: int, fmt: NumberFormat) -> str:
    parts = [
        f"{name} {fmt(float(values[row]))}"
        for name, values in seq.step_scores.items()
        if values.ndim == 1 and values.shape[0] == seq.num_steps
    ]
    return ("; " + ", ".join(parts)) if parts else ""


def step_view(
    seq: SequenceAttribution,
    step: int,
    scale: ColorScale,
    fmt: NumberFormat,
    *,
    digits: int = 2,
    index: int = 0,
    include_special_tokens: bool = False,
) -> list[RenderableType]:
    """The source text of explained step ``step`` with every token coloured by its score, and its
    top sources by ``|score|`` (special and chat-template tokens left out unless
    ``include_special_tokens``)."""
    row = resolve_step(seq, step, index)
    target_pos = seq.target_positions[row]
    values = seq.scores[row].detach().float().cpu().tolist()
    mask = seq.held_fixed.tolist() if seq.held_fixed is not None else [False] * len(seq.tokens)
    plain = NumberFormat(digits)
    stop = seq.spans[row][1]
    where = (
        f" (generated token {target_pos - seq.prompt_length}, position {target_pos}): target "
        if stop - target_pos == 1
        else f" (positions {target_pos}-{stop - 1}): target "
    )
    header = Text.assemble(
        ("Step ", "bold"),
        (str(row), "bold"),
        where,
        (display_token(seq.target_tokens[row], 40), "bold"),
        _step_score_note(seq, row, plain),
    )
    body = Text()
    for pos in range(target_pos):
        value = values[pos]
        style = Style(dim=True) if math.isnan(value) else scale.style(value)
        if mask[pos]:
            style += Style(italic=True)
        body.append(text_token(seq.tokens[pos]) or "∅", style=style)
    body.append(text_token(seq.target_tokens[row]).rstrip("\n") or "∅", style=_TARGET_STYLE)
    hidden = left_out(seq, include_special_tokens).tolist()
    scored = [p for p in range(target_pos) if not math.isnan(values[p])]
    ranked = sorted((p for p in scored if not hidden[p]), key=lambda p: -abs(values[p]))
    top = Text()
    dropped = len(ranked) < len(scored)
    top.append("top |score|" + (" (special and chat-template tokens left out)" if dropped else "") + ": ", style="dim")
    for k, pos in enumerate(ranked[:TOP_K]):
        if k:
            top.append(", ")
        top.append(display_token(seq.tokens[pos], 20), style=scale.style(values[pos]))
        top.append(f" {fmt(values[pos])}")
    return [header, body, top]


def _compact_scale(name: str, values: list[float]) -> ColorScale:
    if name == "probability":
        return ColorScale("sequential", 1.0)
    return ColorScale.fit(torch.tensor(values))


def compact_view(seq: SequenceAttribution, *, digits: int = 2, hint: bool = True) -> list[RenderableType]:
    """Prompt (dim, tail only) then generated text coloured by a step score (every token of a unit
    by its row's), plus a hint (``hint=False`` leaves it out)."""
    usable = {n: v for n, v in seq.step_scores.items() if v.ndim == 1 and v.shape[0] == seq.num_steps}
    name = "probability" if "probability" in usable else next(iter(usable), None)
    values = usable[name].detach().float().cpu().tolist() if name else []
    scale = _compact_scale(name, values) if name else None
    prompt = "".join(text_token(t) for t in seq.prompt_tokens)
    if len(prompt) > PROMPT_TAIL_CELLS:
        prompt = "…" + prompt[-PROMPT_TAIL_CELLS:]
    body = Text()
    body.append(prompt, style="dim")
    row_at = {pos: j for j, (a, b) in enumerate(seq.spans) for pos in range(a, b)}
    for pos in range(seq.prompt_length, len(seq.tokens)):
        row = row_at.get(pos, -1)
        explained = scale is not None and 0 <= row < len(values) and not math.isnan(values[row])
        style = scale.style(values[row]) if explained and scale is not None else Style()
        body.append(text_token(seq.tokens[pos]) or "∅", style=style)
    lines: list[RenderableType] = [body]
    if scale is not None and name is not None:
        lo, hi = scale.limits
        plain = NumberFormat(digits)
        legend = Text.assemble(("colour: ", "dim"), (name, "bold"), f"  {plain(lo)} ", scale.ramp(), f" {plain(hi)}")
        lines.append(legend)
    if hint:
        lines.append(Text(long_hint(seq), style="dim"))
    return lines


def long_hint(seq: SequenceAttribution) -> str:
    """What to call for the details of a result too long for the matrix.

    Example:
        >>> print(long_hint(out.sequences[0]))
        3 explained steps are too many columns for a readable matrix; use show(step=k) ...
    """
    rows = "units" if seq.is_unit_level else "steps"
    return (
        f"{seq.num_steps} explained {rows} are too many columns for a readable matrix; "
        "use show(step=k) for the source scores of row k, show(summary=True) for the summary alone, "
        "or show(view='matrix') for the full table."
    )
