"""Colour scales for attribution scores (colour-blind safe blue / orange).

A scale is *diverging* (blue ← white → orange, symmetric around 0) when the scores have both
signs and *sequential* (white → orange, or white → blue for all-negative scores) otherwise.
Its extent is the largest finite ``|score|``, so one outlier sets the scale, never NaN or inf.

Example:
    >>> import torch
    >>> scale = ColorScale.fit(torch.tensor([-0.5, 0.25, float("nan")]))
    >>> scale.kind, scale.vmax
    ('diverging', 0.5)
    >>> scale.rgb(0.5) == ORANGE
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Bool, Float
from rich.color import Color
from rich.style import Style
from rich.text import Text
from torch import Tensor

__all__ = ["BLUE", "ORANGE", "WHITE", "ColorScale", "NumberFormat", "row_scales"]

RGB = tuple[int, int, int]
# Endpoints of the PuOr/BrBG-style blue-orange ramp (distinguishable with all common colour-vision deficiencies).
BLUE: RGB = (33, 102, 172)
ORANGE: RGB = (230, 97, 1)
WHITE: RGB = (247, 247, 247)
Kind = Literal["diverging", "sequential", "sequential_negative"]


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    t = min(max(t, 0.0), 1.0)
    return (round(a[0] + (b[0] - a[0]) * t), round(a[1] + (b[1] - a[1]) * t), round(a[2] + (b[2] - a[2]) * t))


def _foreground(rgb: RGB) -> str:
    """Black or white text, whichever reads better on ``rgb`` (relative luminance)."""
    lum = 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]
    return "black" if lum > 140 else "white"


@dataclass(frozen=True)
class ColorScale:
    """Maps a score to a background colour.

    Example:
        >>> ColorScale("sequential", 2.0).rgb(0.0) == WHITE
        True
    """

    kind: Kind
    vmax: float

    @classmethod
    def fit(cls, values: Tensor) -> ColorScale:
        """The scale for ``values``: diverging if both signs occur, else sequential; NaN/inf ignored."""
        finite = values[torch.isfinite(values)].double()
        if finite.numel() == 0:
            return cls("sequential", 0.0)
        lo, hi = float(finite.min()), float(finite.max())
        vmax = max(abs(lo), abs(hi))
        if lo < 0 < hi:
            return cls("diverging", vmax)
        return cls("sequential_negative" if hi <= 0 < -lo else "sequential", vmax)

    def rgb(self, value: float) -> RGB:
        """Background colour of ``value`` (values beyond the scale are clipped)."""
        if math.isnan(value) or self.vmax <= 0:
            return WHITE
        t = max(-1.0, min(1.0, value / self.vmax))
        if self.kind == "sequential":
            return _mix(WHITE, ORANGE, t)
        if self.kind == "sequential_negative":
            return _mix(WHITE, BLUE, -t)
        return _mix(WHITE, ORANGE, t) if t >= 0 else _mix(WHITE, BLUE, -t)

    def style(self, value: float) -> Style:
        """Rich style: coloured background and readable foreground."""
        rgb = self.rgb(value)
        return Style(bgcolor=Color.from_rgb(*rgb), color=_foreground(rgb))

    @property
    def limits(self) -> tuple[float, float]:
        """Lowest and highest score of the scale."""
        if self.kind == "diverging":
            return -self.vmax, self.vmax
        if self.kind == "sequential_negative":
            return -self.vmax, 0.0
        return 0.0, self.vmax

    def ramp(self, cells: int = 12) -> Text:
        """A strip of ``cells`` coloured blocks (``█``) from the low to the high end of the scale."""
        lo, hi = self.limits
        ramp = Text()
        for k in range(cells):
            value = lo + (hi - lo) * (k + 0.5) / cells
            ramp.append("█", style=Style(color=Color.from_rgb(*self.rgb(value))))
        return ramp


@dataclass(frozen=True)
class NumberFormat:
    """Fixed-point numbers with ``digits`` decimals, rescaled by ``10**exponent`` when tiny.

    When every score is below ``10**-digits`` the plain numbers would all read ``0.00``; then the
    cells show ``score / 10**exponent`` and the legend says ``×1e-05``.

    Example:
        >>> fmt = NumberFormat.fit(3e-5, digits=2)
        >>> fmt.exponent, fmt(3e-5)
        (-5, '3.00')
    """

    digits: int = 2
    exponent: int = 0

    @classmethod
    def fit(cls, vmax: float, digits: int = 2) -> NumberFormat:
        if 0 < vmax < 10.0 ** (-digits) and math.isfinite(vmax):
            return cls(digits, math.floor(math.log10(vmax)))
        return cls(digits, 0)

    def __call__(self, value: float) -> str:
        """The cell text of ``value``; empty for NaN."""
        if math.isnan(value):
            return ""
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        text = f"{value / 10.0**self.exponent:.{self.digits}f}"
        if text.startswith("-") and float(text) == 0.0:
            text = text[1:]  # no "-0.00"
        return text

    @property
    def suffix(self) -> str:
        """Legend note for rescaled numbers (``""`` when not rescaled)."""
        return f" (values ×1e{self.exponent:+03d})" if self.exponent else ""


def _fit_kept(values: Tensor, left_out: Tensor | None) -> ColorScale:
    """:meth:`ColorScale.fit` of ``values`` (its kind: diverging when any two scores differ in
    sign), with the extent of the columns not ``left_out`` (of all of them when those columns
    hold no non-zero finite score)."""
    whole = ColorScale.fit(values)
    if left_out is not None and bool(left_out.any()):
        kept = ColorScale.fit(values.masked_fill(left_out.to(values.device), math.nan))
        if kept.vmax > 0:
            return ColorScale(whole.kind, kept.vmax)
    return whole


def row_scales(
    values: Float[Tensor, "row column"], scale: str = "step", left_out: Bool[Tensor, " column"] | None = None
) -> list[ColorScale]:
    """One colour scale per row of ``values``: the row's own (``scale="step"``) or the whole
    matrix's (``"global"``), fitted without the columns ``left_out`` (special and template
    tokens, which then show at full colour when they exceed it).

    Example:
        >>> m = torch.tensor([[4.0, 1.0], [0.5, 0.25]])
        >>> [s.vmax for s in row_scales(m, "step")], [s.vmax for s in row_scales(m, "global")]
        ([4.0, 0.5], [4.0, 4.0])
        >>> [s.vmax for s in row_scales(m, "step", left_out=torch.tensor([True, False]))]
        [1.0, 0.25]
    """
    values = values.detach().float().cpu()
    if scale == "global":
        return [_fit_kept(values, left_out)] * values.shape[0]
    return [_fit_kept(row, left_out) for row in values]
