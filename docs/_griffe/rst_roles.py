"""Griffe extension for the API reference (mkdocs.yml): the docstrings use reStructuredText roles such as
``:class:`~genattrib.errors.GenattribError``` and literal blocks introduced by ``::``. A role becomes code,
linked to the object's entry when the reference documents it (an optional cross-reference, resolved by
mkdocs-autorefs: a full path, or a short name tried as ``genattrib.NAME``), and plain code otherwise;
``text::`` becomes ``text:``. Their ``Example:`` sections (Google style, which griffe would read as a
Markdown admonition) become ``Examples:``, so the ``>>>`` lines show as Python sessions.

Example:
    >>> to_markdown("Raises :class:`~genattrib.errors.GenattribError`.")
    'Raises <autoref identifier="genattrib.errors.GenattribError" optional><code>GenattribError</code></autoref>.'
    >>> to_markdown("See :meth:`AttributionModel.save`.")
    'See <autoref identifier="genattrib.AttributionModel.save" optional><code>AttributionModel.save</code></autoref>.'
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


def _role(match: re.Match[str], scope: str | None) -> str:
    tilde, text, target = match.groups()
    path = (target or text).strip()
    shown = text.strip() if target else (path.rsplit(".", 1)[-1] if tilde else path)
    if not re.fullmatch(r"[\w.]+", path):
        return f"`{shown}`"
    if path.startswith("genattrib."):
        return f'<autoref identifier="{path}" optional><code>{shown}</code></autoref>'
    # a short name: a public name of genattrib, or a member of the class (module) the docstring is in
    slug = f' slug="{scope}.{path}"' if scope else ""
    return f'<autoref identifier="genattrib.{path}"{slug} optional><code>{shown}</code></autoref>'


def to_markdown(text: str, scope: str | None = None) -> str:
    """reST roles → (linked) code, ``text::`` before a literal block → ``text:``, ``Example:`` → ``Examples:``.
    ``scope``: the class (or module) whose members short names in the roles may be."""
    text = _ROLE.sub(lambda match: _role(match, scope), text)
    return _EXAMPLE.sub(r"\1Examples:", _LITERAL.sub(":", text))


class RstRoles(griffe.Extension):
    """Rewrite each docstring with :func:`to_markdown` as griffe loads it."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is None:
            return
        owner = obj if obj.is_class or obj.is_module else obj.parent
        obj.docstring.value = to_markdown(obj.docstring.value, owner.path if owner is not None else None)
