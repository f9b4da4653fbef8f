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
from genattrib.render.colors import ColorScale, NumberFormat
from genattrib.render.matrix import HEADER_MAX_WIDTH, LABEL_MAX_WIDTH, matrix_blocks, split_columns
from genattrib.render.summary import summary_view
from genattrib.render.text_view import compact_view, long_hint, step_view
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


def _legend(out: FeatureAttributionOutput, scale: ColorScale, fmt: NumberFormat) -> Text:
    prov = out.provenance
    lo, hi = scale.limits
    legend = Text.assemble(
        (prov.method or "unknown method", "bold"),
        " attributions of ",
        (prov.attributed_fn or "unknown function", "bold"),
        "   ",
        fmt(lo),
        " ",
    )
    legend.append_text(scale.ramp())
    legend.append(f" {fmt(hi)}{fmt.suffix}")
    legend.append("   blank: at/after the target", style="dim")
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
    items: list[RenderableType] = []
    for index, seq in enumerate(out.sequences):
        scale = ColorScale.fit(seq.scores)
        fmt = NumberFormat.fit(scale.vmax, digits)
        items.append(_title(seq, index, width))
        if seq.num_steps == 0:
            items.append(Text("no explained steps", style="dim"))
        elif summary:
            items.extend(summary_view(seq, width=width))
        elif step is not None:
            items.extend(step_view(seq, step, scale, fmt, digits=digits, index=index))
            items.append(_legend(out, scale, fmt))
        elif view == "compact":
            items.extend(compact_view(seq, digits=digits))
        elif view == "auto" and too_long(seq, width, digits):
            items.extend(compact_view(seq, digits=digits, hint=False))
            items.extend(summary_view(seq, width=width))
            items.append(Text(long_hint(seq), style="dim"))
        else:
            items.extend(matrix_blocks(seq, scale, fmt, width=width, step_scores=step_scores, digits=digits))
            items.append(_legend(out, scale, fmt))
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
    ):
        console.print(item)
