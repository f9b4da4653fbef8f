"""Griffe extension for the API reference (mkdocs.yml): the docstrings use reStructuredText roles such as
``:class:`~genattrib.errors.GenattribError``` and literal blocks introduced by ``::``; Markdown shows them
as code (``GenattribError``, the last part with ``~``) and a plain colon. Their ``Example:`` sections
(Google style, which griffe would read as a Markdown admonition) become ``Examples:``, so the ``>>>``
lines show as Python sessions. Nothing else is changed.

Example:
    >>> to_markdown("Raises :class:`~genattrib.errors.GenattribError`; see :func:`genattrib.evaluate`.")
    'Raises `GenattribError`; see `genattrib.evaluate`.'
    >>> to_markdown("Example::\\n\\n    $ genattrib methods")
    'Examples:\\n\\n    $ genattrib methods'
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj|const|ref):`(~?)([^`<]+?)(?:\s*<([^`>]+)>)?`")
_LITERAL = re.compile(r"(?<=\S)::(?=\n\s*\n)")
_EXAMPLE = re.compile(r"^(\s*)Example:[ \t]*$", re.M)


def _role(match: re.Match[str]) -> str:
    tilde, text, target = match.groups()
    name = (target or text).strip()
    if target:
        return f"`{text.strip()}`"
    return f"`{name.rsplit('.', 1)[-1] if tilde else name}`"


def to_markdown(text: str) -> str:
    """reST roles → code spans, ``text::`` before a literal block → ``text:``, ``Example:`` → ``Examples:``."""
    return _EXAMPLE.sub(r"\1Examples:", _LITERAL.sub(":", _ROLE.sub(_role, text)))


class RstRoles(griffe.Extension):
    """Rewrite each docstring with :func:`to_markdown` as griffe loads it."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = to_markdown(obj.docstring.value)
