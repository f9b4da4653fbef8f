"""What the model wrapper can give methods that declare ``requires`` (methods never tokenize).

Example:
    >>> providers = tokenizer_resources(tokenizer)
    >>> providers["vocabulary"]().size == len(tokenizer)
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from genattrib.methods.vocabulary import Vocabulary
from genattrib.models.options.arguments import resolve_baseline


def tokenizer_resources(tokenizer: Any) -> dict[str, Callable[[], Any]]:
    """Lazy providers, by resource name:

    * ``vocabulary``: the tokenizer's :class:`Vocabulary` (token samplers draw from it);
    * ``baseline_id``: the token that stands for a removed one (UNK, else PAD, else EOS).
    """
    return {
        "vocabulary": lambda: Vocabulary.from_tokenizer(tokenizer),
        "baseline_id": lambda: resolve_baseline(None, tokenizer, 1).token_id,
    }
