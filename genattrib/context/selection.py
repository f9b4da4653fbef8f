"""Which scores stand out: PECoRe's selection of context-sensitive tokens (step one) and of salient
context cues (step two), as Inseq's ``attribute-context`` selects them.

A score is selected when its magnitude reaches ``mean + k·std`` of all the scores (``k`` =
``std_weight``; the mean alone when ``k`` is 0 or there is one score; everything when ``k`` is
None), ranked by magnitude, the ``top_k`` largest kept.

Example:
    >>> select_tokens([0.1, 0.2, 3.0, 0.1], std_weight=1.0)
    [(2, 3.0)]
    >>> select_tokens([0.1, 0.2, 3.0, 0.1], std_weight=None, top_k=2)
    [(2, 3.0), (1, 0.2)]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from genattrib.errors import InvalidArgumentError
from genattrib.validation import check_positive_int


def std_threshold(scores: Sequence[float], std_weight: float | int | None) -> float:
    """``mean + std_weight · std`` of ``scores`` (the sample std, as torch's default); 0 for None or no scores."""
    if std_weight is None or len(scores) == 0:
        return 0.0
    values = torch.tensor(list(scores), dtype=torch.float64)
    if std_weight == 0 or len(scores) == 1:
        return float(values.mean())
    return float(values.mean() + std_weight * values.std())


def select_tokens(
    scores: Sequence[float], std_weight: float | int | None = 1.0, top_k: int | None = None
) -> list[tuple[int, float]]:
    """``(index, score)`` of the selected scores, largest magnitude first (see the module docstring)."""
    if std_weight is not None and not isinstance(std_weight, (int, float)):
        raise InvalidArgumentError("std_weight", f"{std_weight!r} is not a number", "pass e.g. 1.0, or None")
    check_positive_int("top_k", top_k, "top_k=3", optional=True)
    threshold = std_threshold(scores, std_weight)
    ranked = sorted(enumerate(float(s) for s in scores), key=lambda pair: -abs(pair[1]))
    chosen = [(i, s) for i, s in ranked if abs(s) >= threshold]
    return chosen[:top_k] if top_k else chosen
