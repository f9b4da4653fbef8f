"""How converged a path method's scores are, per method, for the evaluation tables.

Integrated gradients, SIG, DIG and UDIG record the step score ``completeness_error``: how far a
row's score sum is from ``F(x) - F(x')``. Faithfulness metrics cannot rank scores that are mostly
approximation error, so the tables show, next to each method, the median over explained tokens of
``|completeness_error| / |F(x) - F(x')|`` and mark the method *unconverged* when that median
exceeds :data:`~genattrib.models.results.convergence.COMPLETENESS_TOLERANCE` (10%, the threshold of the
warning printed by ``attribute``). Methods without the step score show "–".

Example:
    >>> out = model.attribute("The capital of France is", " Paris", method="integrated_gradients", n_steps=4)
    >>> c = completeness(out)
    >>> c.steps, c.median >= 0, c.label()            # doctest: +SKIP
    (1, True, '0.734 ⚠')
    >>> completeness(model.attribute("The capital of France is", " Paris", method="saliency")) is None
    True
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from genattrib.models.results.convergence import COMPLETENESS_TOLERANCE, relative_errors
from genattrib.output import FeatureAttributionOutput

#: The mark next to a method whose median relative completeness error exceeds the tolerance.
UNCONVERGED_MARK = "⚠"


@dataclass(frozen=True)
class Completeness:
    """``|completeness_error| / |F(x) - F(x')|`` over a method's explained tokens: the median, the
    largest, and the share of tokens over the tolerance."""

    median: float
    worst: float
    share_over: float
    steps: int
    tolerance: float = COMPLETENESS_TOLERANCE

    @property
    def converged(self) -> bool:
        """Whether the median relative error is within the tolerance (True when no token could say)."""
        return not self.median > self.tolerance

    def label(self) -> str:
        """``"0.034"``, ``"1.230 ⚠"`` when unconverged, ``"–"`` when no token could say."""
        if not math.isfinite(self.median):
            return "–"
        return f"{self.median:.3f}" if self.converged else f"{self.median:.3f} {UNCONVERGED_MARK}"

    def to_dict(self) -> dict[str, Any]:
        return {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Completeness | None:
        if not data:
            return None
        nan = float("nan")
        return cls(
            *(nan if data.get(k) is None else float(data[k]) for k in ("median", "worst", "share_over")),
            int(data.get("steps", 0)),
            float(data.get("tolerance", COMPLETENESS_TOLERANCE)),
        )


def completeness(out: FeatureAttributionOutput) -> Completeness | None:
    """The method's :class:`Completeness` on ``out``, or None when it records no ``completeness_error``."""
    if not any("completeness_error" in seq.step_scores for seq in out.sequences):
        return None
    errors = relative_errors(out)
    if not errors.numel():
        nan = float("nan")
        return Completeness(nan, nan, nan, 0)
    return Completeness(
        float(errors.quantile(0.5)),
        float(errors.max()),
        float((errors > COMPLETENESS_TOLERANCE).float().mean()),
        int(errors.numel()),
    )
