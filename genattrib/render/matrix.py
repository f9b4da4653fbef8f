"""The heatmap matrix: source tokens down, explained (target) tokens across, split to fit.

Each block is a borderless :class:`rich.table.Table` whose first column repeats the source
tokens; blocks hold consecutive target columns and never exceed the available width, so rich
never wraps a cell.

Example:
    >>> seq = out.sequences[0]
    >>> tables = matrix_blocks(seq, ColorScale.fit(seq.scores), NumberFormat(), width=100)
    >>> len(tables)                     # 3 explained tokens fit in one block
    1
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from rich.cells import cell_len
from rich.style import Style
from rich.table import Table
from rich.text import Text

from genattrib.output.sequence import SequenceAttribution
from genattrib.render.colors import ColorScale, NumberFormat
from genattrib.render.tokens import display_token

__all__ = ["LABEL_MAX_WIDTH", "HEADER_MAX_WIDTH", "matrix_blocks", "split_columns"]

LABEL_MAX_WIDTH = 24
HEADER_MAX_WIDTH = 12
_MIN_LABEL_WIDTH = 4
_PROMPT_STYLE = Style()
_GENERATED_STYLE = Style(color="magenta")
_SPECIAL_STYLE = Style(dim=True)


def split_columns(widths: Sequence[int], width: int, fixed: int) -> list[range]:
    """Greedy blocks of consecutive columns: ``fixed + sum(w + 2)`` stays within ``width``.

    Every block holds at least one column, even when that column alone is too wide.

    Example:
        >>> split_columns([4, 4, 4, 4], width=20, fixed=5)
        [range(0, 2), range(2, 4)]
    """
    blocks: list[range] = []
    start, used = 0, fixed
    for j, w in enumerate(widths):
        if j > start and used + w + 2 > width:
            blocks.append(range(start, j))
            start, used = j, fixed
        used += w + 2
    if start < len(widths):
        blocks.append(range(start, len(widths)))
    return blocks


@dataclass(frozen=True)
class _Row:
    """One table row: a label and its cells (text and style) for every target column."""

    label: Text
    cells: list[tuple[str, Style | None]]
    pos: int = -1  # the source position of the row (a side's heading: the side's first position)


def _score_rows(seq: SequenceAttribution, scales: Sequence[ColorScale], fmt: NumberFormat) -> list[_Row]:
    """Rows for source positions before the last explained target (later rows are all NaN);
    column ``j`` is coloured on ``scales[j]``."""
    columns = seq.scores.detach().float().cpu().T.tolist()  # [position][step]
    mask = seq.held_fixed.tolist() if seq.held_fixed is not None else [False] * len(seq.tokens)
    rows = []
    sides = _side_headings(seq)
    for pos in range(seq.target_positions[-1]):
        if pos in sides:
            if sides[pos] is None:
                break  # a source-only result: the target prefix is all NaN
            rows.append(_Row(sides[pos], [("", None)] * seq.num_steps, pos))
        style = _SPECIAL_STYLE if mask[pos] else _GENERATED_STYLE if pos >= seq.prompt_length else _PROMPT_STYLE
        label = Text(display_token(seq.tokens[pos], LABEL_MAX_WIDTH), style=style)
        cells = [(fmt(v), None if v != v else scales[j].style(v)) for j, v in enumerate(columns[pos])]
        rows.append(_Row(label, cells, pos))
    return rows


def _side_headings(seq: SequenceAttribution) -> dict[int, Text | None]:
    """An encoder-decoder result's heading rows, by the position they come before: "source" and
    "target prefix" (``None``: the target side was not attributed, so its rows are left out)."""
    length = seq.source_length
    if length is None:
        return {}
    target = seq.scores[:, length:]
    attributed = bool((~torch.isnan(target)).any())
    heading = lambda text: Text(text, style="bold underline")  # noqa: E731
    return {0: heading("source"), length: heading("target prefix") if attributed else None}


def _step_rows(seq: SequenceAttribution, digits: int) -> list[_Row]:
    """One row per step score, coloured on its own scale."""
    fmt = NumberFormat(digits)
    rows = []
    for name, values in seq.step_scores.items():
        if values.ndim != 1 or values.shape[0] != seq.num_steps:
            continue
        scale = ColorScale.fit(values.float())
        cells = [(fmt(v), None if v != v else scale.style(v)) for v in values.detach().float().cpu().tolist()]
        rows.append(_Row(Text(display_token(name, LABEL_MAX_WIDTH), style="italic"), cells))
    return rows


def _block_table(
    headers: list[Text], rows: list[_Row], extra: list[_Row], cols: range, label_width: int, widths: list[int]
) -> Table:
    """One block; ``rows`` are already cut to the positions before the block's last target."""
    table = Table(
        box=None, padding=(0, 1), pad_edge=False, show_edge=False, collapse_padding=False, header_style="bold"
    )
    table.add_column(Text(""), width=label_width, no_wrap=True, overflow="ellipsis")
    for j in cols:
        table.add_column(headers[j], width=widths[j], no_wrap=True, overflow="ellipsis", justify="right")
    for group_index, group in enumerate((rows, extra)):
        if group_index and group:
            table.add_row()  # blank line between the matrix and the step scores
        for row in group:
            cells = [Text(row.cells[j][0], style=row.cells[j][1] or "") for j in cols]
            table.add_row(row.label, *cells)
    return table


def matrix_blocks(
    seq: SequenceAttribution,
    scale: ColorScale | Sequence[ColorScale],
    fmt: NumberFormat,
    *,
    width: int,
    step_scores: bool = True,
    digits: int = 2,
) -> list[Table]:
    """Tables of at most ``width`` cells each, together covering every explained step of ``seq``;
    ``scale`` colours every column, or is a list of one scale per column (explained step)."""
    if seq.num_steps == 0:
        return []
    scales = [scale] * seq.num_steps if isinstance(scale, ColorScale) else list(scale)
    headers = [Text(display_token(t, HEADER_MAX_WIDTH), justify="right") for t in seq.target_tokens]
    rows = _score_rows(seq, scales, fmt)
    extra = _step_rows(seq, digits) if step_scores else []
    all_rows = rows + extra
    widths = [
        max([1, cell_len(headers[j].plain)] + [cell_len(r.cells[j][0]) for r in all_rows]) for j in range(seq.num_steps)
    ]
    label_width = max([_MIN_LABEL_WIDTH] + [cell_len(r.label.plain) for r in all_rows])
    # keep room for at least one column next to the labels
    label_width = max(_MIN_LABEL_WIDTH, min(label_width, width - max(widths) - 2))
    for row in all_rows:
        row.label.truncate(label_width, overflow="ellipsis")
    blocks = split_columns(widths, width, label_width)
    # rows at or after a block's last target are blank in that block: leave them out
    targets = seq.target_positions
    return [
        _block_table(headers, [r for r in rows if r.pos < targets[cols[-1]]], extra, cols, label_width, widths)
        for cols in blocks
    ]
