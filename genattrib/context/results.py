"""What ``attribute_context`` returns: the context sensitivity of every generated token (step one)
and, for each selected token, the scores of the context tokens (step two).

Example:
    >>> context = "Paris is the capital of France."
    >>> out = genattrib.attribute_context(model, "Paris is in", input_context_text=context)  # doctest: +SKIP
    >>> [cue.token for cue in out.cues]                         # doctest: +SKIP
    [' France']
    >>> out.show(); out.save_html("context.html"); out.save("context.json")   # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from genattrib.context.selection import select_tokens
from genattrib.context.views import context_html, context_text


@dataclass
class ContextCue:
    """One context-sensitive token (step one) and what drove it (step two).

    ``index`` counts the tokens of the current output (0 = first); ``contrast_token`` is what the
    model predicts there without the context; ``input_context_scores`` / ``output_context_scores``
    hold one attribution score per token of the input / output context.
    """

    index: int
    token: str
    score: float
    contrast_token: str | None = None
    input_context_scores: list[float] | None = None
    output_context_scores: list[float] | None = None

    def salient(self, std_weight: float | int | None = 1.0, top_k: int | None = None) -> dict[str, list[int]]:
        """Indices of the salient cues of each context (``std_weight``/``top_k`` as in step one),
        selected over the scores of both contexts together, as Inseq does."""
        scores = [*(self.input_context_scores or []), *(self.output_context_scores or [])]
        n_input = len(self.input_context_scores or [])
        chosen = [i for i, _ in select_tokens(scores, std_weight, top_k)]
        return {"input": [i for i in chosen if i < n_input], "output": [i - n_input for i in chosen if i >= n_input]}


@dataclass
class ContextAttributionOutput:
    """The result of :func:`~genattrib.context.attribute_context` (see the module docstring)."""

    input_context: str | None
    input_context_tokens: list[str]
    input_current: str
    output_context: str | None
    output_context_tokens: list[str]
    output_current: str
    output_current_tokens: list[str]
    metric: str
    sensitivity_scores: list[float]
    threshold: float
    cues: list[ContextCue] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def selected(self) -> list[int]:
        """Indices (in ``output_current_tokens``) of the context-sensitive tokens, by decreasing score."""
        return [cue.index for cue in self.cues]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContextAttributionOutput:
        cues = [ContextCue(**cue) for cue in data.get("cues", [])]
        return cls(**{**data, "cues": cues})

    def save(self, path: str | os.PathLike) -> None:
        """Write the result as JSON (``load`` reads it back)."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=1, ensure_ascii=False)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ContextAttributionOutput:
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    def to_text(self, std_weight: float | int | None = 1.0, top_k: int | None = 5) -> str:
        """The console view (see :mod:`genattrib.context.views`)."""
        return context_text(self, std_weight, top_k)

    def show(self, std_weight: float | int | None = 1.0, top_k: int | None = 5) -> None:
        print(self.to_text(std_weight, top_k))

    def to_html(self, std_weight: float | int | None = 1.0, top_k: int | None = 5) -> str:
        """A self-contained HTML page (see :mod:`genattrib.context.views`)."""
        return context_html(self, std_weight, top_k)

    def save_html(self, path: str | os.PathLike, std_weight: float | int | None = 1.0, top_k: int | None = 5) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_html(std_weight, top_k))
