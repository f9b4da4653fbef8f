"""Turn token ids into clean display strings (no ``Ġ``/``▁`` artefacts), ids stay the truth.

Each token's text is the difference between decoding a short window ending with it and the
same window without it, so leading spaces and byte-level pieces come out as real text.

Example:
    >>> ids = tokenizer("The capital").input_ids
    >>> tokenizer.convert_ids_to_tokens(ids)
    ['The', 'Ġcapital']
    >>> decode_tokens(tokenizer, ids)
    ['The', ' capital']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_WINDOW = 6


def decode_tokens(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """Display text of every token of ``ids``."""
    ids = [int(i) for i in ids]
    out = []
    for k, tok in enumerate(ids):
        start = max(0, k - _WINDOW)
        before = tokenizer.decode(ids[start:k], clean_up_tokenization_spaces=False) if k > start else ""
        both = tokenizer.decode(ids[start : k + 1], clean_up_tokenization_spaces=False)
        text = both[len(before) :] if both.startswith(before) else ""
        if not text or "\ufffd" in text:
            piece = tokenizer.convert_ids_to_tokens(tok)
            text = tokenizer.convert_tokens_to_string([piece]) if isinstance(piece, str) else str(piece)
        out.append(text)
    return out
