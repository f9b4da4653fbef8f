"""Show attribution results: rich terminal heatmaps (:mod:`genattrib.render.console`).

Example:
    >>> from genattrib.render import show
    >>> show(out, max_width=100)        # doctest: +SKIP
"""

from genattrib.render.console import render, show

__all__ = ["render", "show"]
