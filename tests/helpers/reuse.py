"""Tests' switch for the planner's prefix-reuse decision: patch its threshold within a block.

Example:
    >>> with kv_reuse("never"):           # every perturbed row runs in full
    ...     planner.reuse_pays(1.0, 100.0)
    False
"""

from __future__ import annotations

import math
from unittest import mock

from genattrib.engine import planner


def kv_reuse(mode: str) -> mock._patch:
    """``"always"``: suffixes over the clean prefix cache wherever the model supports a cache;
    ``"never"``: full rows; ``"auto"``: the planner's own threshold."""
    threshold = {"always": math.inf, "never": -math.inf, "auto": planner.WORTH_IT}[mode]
    return mock.patch.object(planner, "WORTH_IT", threshold)
