"""Where a result came from: model, method, target, generation, versions and timings.

Example:
    >>> p = Provenance(model_name="tiny", method="saliency")
    >>> Provenance.from_dict(p.to_dict()) == p
    True
"""

from __future__ import annotations

import dataclasses
import platform
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from genattrib.version import __version__


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape the numbers."""
    import transformers

    return {
        "genattrib": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


@dataclass
class Provenance:
    """Everything needed to know how a result was produced (JSON-serialisable)."""

    model_name: str = ""
    model_revision: str | None = None
    model_class: str = ""
    dtype: str = ""
    devices: list[str] = field(default_factory=list)
    device_map: dict[str, Any] | None = None
    method: str = ""
    method_params: dict[str, Any] = field(default_factory=dict)
    attributed_fn: str = ""
    attributed_fn_args: dict[str, Any] = field(default_factory=dict)
    # whether the scores depend on attributed_fn (False for attention weights); None: not recorded (older files)
    attributed_fn_used: bool | None = None
    # what a row explains: "tokens", or units ("sentences" ..., "token spans", "character spans")
    # whose value is attributed_fn merged over their tokens; step scores merge by step_score_rules
    explain: str = "tokens"
    step_scores: list[str] = field(default_factory=list)
    # merge rule of each step score (target and method scores), declared where the score is made;
    # empty in files saved before rules were recorded (aggregation then falls back to STEP_SCORE_RULES)
    step_score_rules: dict[str, str] = field(default_factory=dict)
    generation_config: dict[str, Any] = field(default_factory=dict)
    forced_target: bool = False
    seed: int | None = None
    versions: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    work: dict[str, int] = field(default_factory=dict)  # counts, e.g. model rows run
    aggregations: list[str] = field(default_factory=list)  # steps applied by genattrib.aggregation, in order
    # how the scores were stored: granular_budget_mb, granular_kept, top_k, stream_to (empty in older files)
    storage: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # JSON has no tuples: store lists so a saved and reloaded provenance compares equal
        for f in dataclasses.fields(self):
            setattr(self, f.name, _jsonable(getattr(self, f.name)))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Provenance:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
