"""What :func:`genattrib.evaluate` returns: per-step values and bootstrap summaries.

Example:
    >>> res = genattrib.evaluate(out, metrics=["comprehensiveness"], model=model)
    >>> res.per_step["comprehensiveness"].shape                        # (evaluated steps,)
    torch.Size([3])
    >>> summary = res.summary["comprehensiveness"]                     # mean and 95% interval
    >>> summary.low <= summary.value <= summary.high
    True
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jaxtyping import Float, Int
from torch import Tensor

from genattrib.faithfulness.bootstrap import Interval, per_example_means
from genattrib.faithfulness.metrics import METRICS
from genattrib.output.serialization import atomic_write_bytes


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


@dataclass
class EvaluationResult:
    """Faithfulness of one attribution result. ``summary[m]`` is the mean over examples (or, for
    Soft-NS/NC, ln(Σ method / Σ random)) with a 95% bootstrap interval over examples."""

    per_step: dict[str, Float[Tensor, " step"]]
    random_per_step: dict[str, Float[Tensor, " step"]]
    example: Int[Tensor, " step"]
    step: Int[Tensor, " step"]
    summary: dict[str, Interval]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def metrics(self) -> list[str]:
        return list(self.per_step)

    def per_example(self, metric: str) -> Float[Tensor, " example"]:
        """Mean of ``metric`` over the evaluated steps of each example."""
        return per_example_means(self.per_step[metric], self.example)

    def rows(self) -> list[dict[str, Any]]:
        """One row per metric: name, value, low, high, n, lower_is_better, summary kind."""
        out = []
        for name, interval in self.summary.items():
            metric = METRICS[name]
            row = {
                "metric": name,
                **interval.to_dict(),
                "lower_is_better": metric.lower_is_better,
                "summary": metric.summary,
            }
            if name in self.random_per_step:
                row["step_mean"] = float(self.per_step[name].nanmean())
                row["random_step_mean"] = float(self.random_per_step[name].nanmean())
            out.append(row)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: summaries, per-step values (null for non-finite) and run information."""

        def clean(values: Tensor) -> list[float | None]:
            return [_finite(float(v)) for v in values]

        return {
            "info": self.info,
            "summary": [
                {k: (_finite(v) if isinstance(v, float) else v) for k, v in row.items()} for row in self.rows()
            ],
            "example": self.example.tolist(),
            "step": self.step.tolist(),
            "per_step": {k: clean(v) for k, v in self.per_step.items()},
            "random_per_step": {k: clean(v) for k, v in self.random_per_step.items()},
        }

    def save_json(self, path: str | Path) -> Path:
        path = Path(path)
        atomic_write_bytes(path, json.dumps(self.to_dict(), indent=1).encode("utf-8"))
        return path

    def show(self, console: Any = None) -> None:
        """Print the summary as a rich table."""
        from rich.console import Console

        from genattrib.evaluation.report import summary_table

        (console or Console()).print(summary_table({self.info.get("method", "method"): self}))
