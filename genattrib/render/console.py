"""Terminal heatmaps of a :class:`~genattrib.output.FeatureAttributionOutput` (rich).

For each sequence: a title, the score matrix (source tokens down, explained tokens across,
split into blocks that fit the width), the step scores under it, and a legend with the colour
ramp, the method and the attributed function. Outputs with more than
:data:`MAX_MATRIX_COLUMNS` explained steps, and unit-level results whose units do not fit the
width, get the text and a per-unit summary instead: each generated sentence (or unit) with the
source sentences it drew on most (:func:`too_long`; ``view="matrix"`` forces the matrix,
``view="compact"`` gives the text alone); ``step=k`` shows the source text of one step coloured by its scores;
``summary=True`` lists, per generated sentence, the source sentences that mattered most
(:mod:`genattrib.render.summary`).

Example:
    >>> out.show()
    Sequence 0  ·Paris.  (3 explained × 9 tokens)
    ...
    >>> out.show(step=2, max_width=100)
    Sequence 0  ·Paris.  ...
    ...
    >>> import io
    >>> from rich.console import Console
    >>> console = Console(record=True, width=100, file=io.StringIO())
    >>> for item in render(out, console=console):
    ...     console.print(item)
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.console import Console, RenderableType
from rich.constrain import Constrain
from rich.text import Text

from genattrib.errors import InvalidArgumentError
from genattrib.output.attribution import FeatureAttributionOutput
from genattrib.output.sequence import SequenceAttribution
from genattrib.render.captions import (
    check_include_special,
    check_scale,
    left_out,
    scale_caption,
    score_caption,
    special_caption,
)
from genattrib.render.colors import ColorScale, NumberFormat, row_scales
from genattrib.render.matrix import HEADER_MAX_WIDTH, LABEL_MAX_WIDTH, matrix_blocks, split_columns
from genattrib.render.summary import summary_view
from genattrib.render.text_view import compact_view, long_hint, resolve_step, step_view
from genattrib.render.tokens import display_token

__all__ = ["MAX_MATRIX_COLUMNS", "render", "show", "too_long"]

MAX_MATRIX_COLUMNS = 60
VIEWS = ("auto", "matrix", "compact")


def _title(seq: SequenceAttribution, index: int, width: int) -> Text:
    text = seq.generated_text or "".join(seq.generated_tokens)
    title = Text.assemble((f"Sequence {index}", "bold"), "  ")
    counts = f"  ({seq.num_steps} explained × {len(seq.tokens)} tokens)"
    room = max(8, width - title.cell_len - len(counts))
    title.append(display_token(text, room), style="italic")
    title.append(counts, style="dim")
    return title


def _legend(
    out: FeatureAttributionOutput, scale: ColorScale, fmt: NumberFormat, *, per_row: bool, notes: list[str]
) -> Text:
    """What the scores are, the colour ramp (its ends: numbers, or "max" when each column has its
    own scale) and, on a second line, the scale and what it leaves out."""
    lo, hi = scale.limits
    ends = {lo: fmt(lo), hi: fmt(hi)}
    if per_row:
        ends = {lo: "-max" if lo < 0 else "0", hi: "max" if hi > 0 else "0"}
    legend = Text.assemble((score_caption(out.provenance), "bold"), "   ", ends[lo], " ")
    legend.append_text(scale.ramp())
    legend.append(f" {ends[hi]}{fmt.suffix}")
    legend.append("   blank: at/after the target", style="dim")
    if any(notes):
        legend.append("\n" + " · ".join(note for note in notes if note), style="dim")
    return legend


def too_long(seq: SequenceAttribution, width: int, digits: int = 2) -> bool:
    """Whether ``view="auto"`` shows ``seq`` as text and a per-unit summary instead of the matrix:
    more than :data:`MAX_MATRIX_COLUMNS` rows, or unit rows (whose headers are passages) that do
    not fit the width in one block.

    Example:
        >>> too_long(out.sequences[0], width=80)
        False
    """
    if seq.num_steps > MAX_MATRIX_COLUMNS:
        return True
    if not seq.is_unit_level:
        return False
    widths = [max(cell_len(display_token(t, HEADER_MAX_WIDTH)), digits + 4) for t in seq.target_tokens]
    return len(split_columns(widths, width, LABEL_MAX_WIDTH)) > 1


def _check_view(view: str) -> None:
    if view not in VIEWS:
        raise InvalidArgumentError("view", f"unknown view {view!r}", "use 'auto', 'matrix' or 'compact'")


def render(
    out: FeatureAttributionOutput,
    *,
    console: Console | None = None,
    step: int | None = None,
    view: str = "auto",
    step_scores: bool = True,
    max_width: int | None = None,
    digits: int = 2,
    summary: bool = False,
    scale: str = "step",
    include_special_tokens: bool = False,
) -> list[RenderableType]:
    """The renderables that :func:`show` prints, each at most ``max_width`` cells wide.

    Example:
        >>> import io
        >>> console = Console(record=True, width=80, file=io.StringIO())
        >>> for item in render(out, console=console):
        ...     console.print(item)
        >>> "Paris" in console.export_text()
        True
    """
    _check_view(view)
    if summary and step is not None:
        raise InvalidArgumentError("summary", "summary=True and step= ask for two different views", "pass one of them")
    if digits < 0:
        raise InvalidArgumentError("digits", f"digits={digits} is negative", "pass 0 or more decimals")
    console = console or Console()
    width = min(max_width, console.width) if max_width else console.width
    if width < 10:
        raise InvalidArgumentError("max_width", f"width {width} is too narrow", "use at least 10 columns")
    check_scale(scale)
    keep = check_include_special(include_special_tokens)
    items: list[RenderableType] = []
    for index, seq in enumerate(out.sequences):
        whole = ColorScale.fit(seq.scores)
        fmt = NumberFormat.fit(whole.vmax, digits)
        hidden = left_out(seq, keep)
        notes = [special_caption(seq, keep)]
        rows = "unit" if seq.is_unit_level else "step"
        items.append(_title(seq, index, width))
        if seq.num_steps == 0:
            items.append(Text("no explained steps", style="dim"))
        elif summary:
            items.extend(summary_view(seq, width=width, include_special_tokens=keep))
        elif step is not None:
            row = resolve_step(seq, step, index)
            values = seq.scores[row : row + 1] if scale == "step" else seq.scores
            [row_scale, *_] = row_scales(values, scale, hidden)
            items.extend(step_view(seq, row, row_scale, fmt, digits=digits, index=index, include_special_tokens=keep))
            notes.insert(0, scale_caption(scale, rows, one=True))
            items.append(_legend(out, row_scale, fmt, per_row=False, notes=notes))
        elif view == "compact":
            items.extend(compact_view(seq, digits=digits))
        elif view == "auto" and too_long(seq, width, digits):
            items.extend(compact_view(seq, digits=digits, hint=False))
            items.extend(summary_view(seq, width=width, include_special_tokens=keep))
            items.append(Text(long_hint(seq), style="dim"))
        else:
            scales = row_scales(seq.scores, scale, hidden)
            items.extend(matrix_blocks(seq, scales, fmt, width=width, step_scores=step_scores, digits=digits))
            notes.insert(0, scale_caption(scale, rows))
            legend_scale = scales[0] if scale == "global" else ColorScale(whole.kind, 1.0)
            items.append(_legend(out, legend_scale, fmt, per_row=scale == "step", notes=notes))
        items.append(Text(""))
    if width < console.width:
        return [Constrain(item, width) for item in items]
    return items


def show(
    out: FeatureAttributionOutput,
    *,
    console: Console | None = None,
    step: int | None = None,
    view: str = "auto",
    step_scores: bool = True,
    max_width: int | None = None,
    digits: int = 2,
    summary: bool = False,
    scale: str = "step",
    include_special_tokens: bool = False,
) -> None:
    """Print ``out`` in the terminal (see the module docstring for the layout).

    Args:
        console: where to print; a new :class:`rich.console.Console` by default.
        step: show only explained step ``step`` (row of ``scores``) as coloured source text.
        view: ``"auto"`` (matrix up to 60 explained steps and unit rows that fit, else the text and
            a per-unit summary), ``"matrix"`` or ``"compact"`` (the text alone).
        step_scores: add the step-score rows (e.g. probability) under the matrix.
        max_width: cap on the width used (defaults to the console width).
        digits: decimals shown per score.
        summary: per generated sentence, the top-3 source sentences with their share of the attribution.
        scale: ``"step"`` (default) colours each explained step against its own largest
            ``|score|``; ``"global"`` colours every step against the sequence's largest. The legend
            says which.
        include_special_tokens: keep special tokens and chat-template text (``<|im_start|>``,
            role names, a default system prompt) in the top-k lists, summaries and colour scale;
            by default they are left out there (their scores are unchanged and still shown).

    Example:
        >>> out.show(max_width=100, digits=3)
        Sequence 0  ·Paris.  (3 explained × 9 tokens)
        ...
    """
    console = console or Console()
    for item in render(
        out,
        console=console,
        step=step,
        view=view,
        step_scores=step_scores,
        max_width=max_width,
        digits=digits,
        summary=summary,
        scale=scale,
        include_special_tokens=include_special_tokens,
    ):
        console.print(item)
