"""Context attribution (PECoRe, Sarti et al., ICLR 2024): which generated tokens depend on the
context, and which context tokens drove them (``genattrib.attribute_context``; the command
``genattrib attribute-context``; docs/attribute-context.md)."""

from genattrib.context.attribute_context import attribute_context
from genattrib.context.results import ContextAttributionOutput, ContextCue
from genattrib.context.selection import select_tokens, std_threshold

__all__ = ["attribute_context", "ContextAttributionOutput", "ContextCue", "select_tokens", "std_threshold"]
