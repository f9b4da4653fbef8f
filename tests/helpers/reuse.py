"""Tests' switches for the planner: its prefix-reuse threshold within a block, and the device's
measured speed for one test.

Example:
    >>> with kv_reuse("never"):           # every perturbed row runs in full
    ...     planner.reuse_pays(1.0, 100.0)
    False
"""

from __future__ import annotations

import math
from typing import Any
from unittest import mock

import pytest
import torch

from genattrib.engine import cost_model, planner


def kv_reuse(mode: str) -> mock._patch:
    """``"always"``: suffixes over the clean prefix cache wherever the model supports a cache;
    ``"never"``: full rows; ``"auto"``: the planner's own threshold."""
    threshold = {"always": math.inf, "never": -math.inf, "auto": planner.WORTH_IT}[mode]
    return mock.patch.object(planner, "WORTH_IT", threshold)


def compute_bound_device(monkeypatch: pytest.MonkeyPatch, model: Any) -> None:
    """For this test, a device where compute, not calls, dominates (as for the default model): a
    one-token call takes 5 ms and a 16-token row 20 ms, so a call costs about 4 token-passes. The
    wrapper's kept cost model is set aside for the test and restored after it."""
    monkeypatch.setattr(cost_model, "_measure", lambda forward: (5e-3, 5e-3 + 15e-3))
    probed = model.parts.probed
    key = f"cost_model/{torch.get_num_threads()}"
    monkeypatch.setitem(probed, key, None)  # remembers what was there, for teardown
    del probed[key]  # computed again, from the patched measurement
