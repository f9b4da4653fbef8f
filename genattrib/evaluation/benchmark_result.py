"""What :func:`genattrib.benchmark` returns: one evaluation per method, as a table.

Example:
    >>> res = genattrib.benchmark(model, "saliency", metrics="comprehensiveness", max_new_tokens=2, max_examples=2)
    >>> res.rows()[0]["method"], res.rows()[0]["metric"]
    ('saliency', 'comprehensiveness')
    >>> res.to_pandas().pivot(index="method", columns="metric", values="value")  # needs pandas  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from genattrib.errors import MissingDependencyError
from genattrib.evaluation.completeness import Completeness
from genattrib.evaluation.result import EvaluationResult
from genattrib.faithfulness.bootstrap import Interval
from genattrib.faithfulness.metrics import METRICS
from genattrib.output.serialization import atomic_write_bytes

#: Extra per-method figures that are not faithfulness metrics: (lower is better, description).
EXTRAS = {
    "distractor_mass": (True, "share of |attribution| on the distractor span (token-level sets)"),
    "distractor_share": (True, "the distractor's share of the prompt tokens (what uniform scores give)"),
}
#: Figures that describe the data, not the method: never "best".
REFERENCE_ONLY = ("distractor_share",)


@dataclass
class MethodRun:
    """One method's evaluation, its attribution time and settings."""

    method: str
    result: EvaluationResult
    attribute_seconds: float
    params: dict[str, Any]
    extra: dict[str, Interval] = field(default_factory=dict)
    tokens: int = 0
    rows: int = 0
    completeness: Completeness | None = None  # None: the method records no completeness_error


def _num(x: float) -> float | None:
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


@dataclass
class BenchmarkResult:
    """Methods × metrics with 95% bootstrap intervals over examples."""

    runs: list[MethodRun]
    info: dict[str, Any]

    @property
    def methods(self) -> list[str]:
        return [r.method for r in self.runs]

    @property
    def metrics(self) -> list[str]:
        names = list(self.info.get("metrics", []))
        extras = [e for e in EXTRAS if any(e in r.extra for r in self.runs)]
        return names + extras

    def interval(self, method: str, metric: str) -> Interval | None:
        for run in self.runs:
            if run.method == method:
                return run.result.summary.get(metric) or run.extra.get(metric)
        return None

    def rows(self) -> list[dict[str, Any]]:
        """Long format: one row per (method, metric)."""
        out = []
        for run in self.runs:
            for metric in self.metrics:
                interval = run.result.summary.get(metric) or run.extra.get(metric)
                if interval is None:
                    continue
                lower = METRICS[metric].lower_is_better if metric in METRICS else EXTRAS[metric][0]
                summary = METRICS[metric].summary if metric in METRICS else "mean"
                out.append(
                    {
                        "method": run.method,
                        "metric": metric,
                        "value": interval.value,
                        "low": interval.low,
                        "high": interval.high,
                        "n": interval.n,
                        "lower_is_better": lower,
                        "summary": summary,
                        "attribute_seconds": run.attribute_seconds,
                        "tokens": run.tokens,
                    }
                )
        return out

    def best(self, metric: str) -> str | None:
        """The method (not the random row) with the best value of ``metric`` (None for reference figures)."""
        if metric in REFERENCE_ONLY:
            return None
        rows = [
            r for r in self.rows() if r["metric"] == metric and r["method"] != "random" and _num(r["value"]) is not None
        ]
        if not rows:
            return None
        lower = rows[0]["lower_is_better"]
        return (min if lower else max)(rows, key=lambda r: r["value"])["method"]

    def to_pandas(self) -> Any:
        """The long-format table as a pandas DataFrame (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as error:
            raise MissingDependencyError(
                "BenchmarkResult.to_pandas() needs the optional package pandas (pip install pandas); "
                "rows() gives the same table as dicts"
            ) from error
        return pd.DataFrame(self.rows())

    def to_dict(self) -> dict[str, Any]:
        return {
            "info": self.info,
            "rows": [{k: (_num(v) if isinstance(v, float) else v) for k, v in r.items()} for r in self.rows()],
            "methods": [
                {
                    "method": r.method,
                    "params": r.params,
                    "attribute_seconds": r.attribute_seconds,
                    "tokens": r.tokens,
                    "rows": r.rows,
                    "evaluate_seconds": r.result.info.get("seconds"),
                    "completeness": r.completeness.to_dict() if r.completeness is not None else None,
                }
                for r in self.runs
            ],
        }

    def save_json(self, path: str | Path) -> Path:
        path = Path(path)
        atomic_write_bytes(path, json.dumps(self.to_dict(), indent=1, default=str).encode("utf-8"))
        return path

    @classmethod
    def load(cls, path: str | Path) -> BenchmarkResult:
        """A result saved with :meth:`save_json` (summaries and timings; per-step values are not
        saved), e.g. to print it again or re-render its HTML report."""
        data = json.loads(Path(path).read_text())
        runs = []
        for entry in data["methods"]:
            summary, extra = {}, {}
            for row in (r for r in data["rows"] if r["method"] == entry["method"]):
                interval = Interval(
                    *(math.nan if row[k] is None else float(row[k]) for k in ("value", "low", "high")), int(row["n"])
                )
                (summary if row["metric"] in METRICS else extra)[row["metric"]] = interval
            empty = torch.empty(0)
            result = EvaluationResult(
                {}, {}, empty.long(), empty.long(), summary, {"seconds": entry.get("evaluate_seconds")}
            )
            runs.append(
                MethodRun(
                    entry["method"],
                    result,
                    float(entry["attribute_seconds"]),
                    entry.get("params", {}),
                    extra,
                    int(entry.get("tokens", 0)),
                    int(entry.get("rows", 0)),
                    Completeness.from_dict(entry.get("completeness")),
                )
            )
        return cls(runs, data["info"])

    def save_html(self, path: str | Path) -> Path:
        """One self-contained HTML report with a bar chart (and intervals) per metric."""
        from genattrib.evaluation.report import benchmark_html

        path = Path(path)
        atomic_write_bytes(path, benchmark_html(self).encode("utf-8"))
        return path

    def show(self, console: Any = None) -> None:
        from rich.console import Console

        from genattrib.evaluation.report import benchmark_table

        (console or Console()).print(benchmark_table(self))
