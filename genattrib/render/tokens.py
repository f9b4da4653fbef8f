"""Make decoded tokens readable in a terminal cell.

Stored tokens are decoded text (``" Paris"``, ``"\\n"``, ``"<|im_end|>"``). For display, leading
and trailing whitespace becomes ``·``, newlines ``⏎``, tabs ``⇥``, other control characters their
Unicode control pictures, and long tokens are cut with ``…`` (measured in terminal cells, so
wide CJK characters and emoji count double).

Example:
    >>> display_token(" Paris")
    '·Paris'
    >>> display_token("a b\\n")
    'a b⏎'
    >>> display_token("abcdefghij", max_width=5)
    'abcd…'
"""

from __future__ import annotations

from rich.cells import cell_len, set_cell_size

__all__ = ["display_token", "fit_cells", "text_token"]

_SYMBOLS = {"\n": "⏎", "\t": "⇥", "\r": "␍", "\x7f": "␡"}
EMPTY_TOKEN = "∅"


def _visible_char(char: str) -> str:
    """One character as it should appear: symbols for controls, ``·`` for odd blanks."""
    if char in _SYMBOLS:
        return _SYMBOLS[char]
    if ord(char) < 0x20:
        return chr(0x2400 + ord(char))  # Unicode "control pictures" block
    if char == " " or char.isprintable():
        return char
    return "·" if char.isspace() else "\ufffd"


def fit_cells(text: str, max_width: int | None) -> str:
    """Cut ``text`` to at most ``max_width`` terminal cells, ending in ``…`` when cut.

    Example:
        >>> fit_cells("hello world", 6)
        'hello…'
    """
    if max_width is None or cell_len(text) <= max_width:
        return text
    if max_width <= 1:
        return "…"[:max_width]
    # set_cell_size pads with a space when a wide character straddles the cut
    return set_cell_size(text, max_width - 1).rstrip(" ") + "…"


def display_token(token: str, max_width: int | None = None) -> str:
    """A token for a table cell: visible whitespace, no control characters, at most ``max_width`` cells.

    Example:
        >>> display_token("  hi ")
        '··hi·'
        >>> display_token("")
        '∅'
    """
    if token == "":
        return EMPTY_TOKEN
    mapped = "".join(_visible_char(c) for c in token)
    core = mapped.strip(" ")
    if not core:
        return fit_cells("·" * len(mapped), max_width)
    lead = len(mapped) - len(mapped.lstrip(" "))
    trail = len(mapped) - len(mapped.rstrip(" "))
    shown = "·" * lead + core + "·" * trail
    return fit_cells(shown, max_width)


def text_token(token: str) -> str:
    """A token for running text: real spaces kept, newlines shown as ``⏎`` then a line break.

    Example:
        >>> text_token(" Paris\\n")
        ' Paris⏎\\n'
    """
    out = []
    for char in token:
        if char == "\n":
            out.append("⏎\n")
        elif char == " ":
            out.append(char)
        else:
            out.append(_visible_char(char))
    return "".join(out)
