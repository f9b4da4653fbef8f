"""Show attribution results: rich terminal heatmaps (:mod:`genattrib.render.console`) and one
self-contained HTML page (:mod:`genattrib.render.html`).

Example:
    >>> from genattrib.render import save_html, show
    >>> show(out, max_width=100)
    Sequence 0  ·Paris.  (3 explained × 9 tokens)
    ...
    >>> save_html(out, "paris.html")
    PosixPath('paris.html')
"""

from genattrib.render.console import render, show
from genattrib.render.html import save_html, to_html

__all__ = ["render", "save_html", "show", "to_html"]
