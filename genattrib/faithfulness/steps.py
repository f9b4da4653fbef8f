"""The explained steps of a result, flattened into what the faithfulness metrics need.

Each evaluated step is the prefix before one generated token, its target token, the
attribution row over that prefix and which prefix positions are special tokens.

Example:
    >>> items = collect_steps(out, every=2)
    >>> items.num_steps, items.prefixes[0].shape
    (2, torch.Size([6]))
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from genattrib.errors import InvalidArgumentError
from genattrib.output import FeatureAttributionOutput
from genattrib.validation import check_positive_int

#: Aggregations that change what a score column means (no longer one token each).
POSITIONAL_AGGREGATIONS = ("words", "spans", "sentences", "lines", "roles")


@dataclass(frozen=True)
class EvalSteps:
    """Flattened steps; ``example[i]`` is the sequence step ``i`` came from."""

    prefixes: list[Int[Tensor, " _position"]]
    scores: list[Float[Tensor, " _position"]]
    special: list[Bool[Tensor, " _position"]]
    target_ids: Int[Tensor, " step"]
    example: Int[Tensor, " step"]
    step: Int[Tensor, " step"]

    @property
    def num_steps(self) -> int:
        return int(self.target_ids.shape[0])

    @property
    def num_examples(self) -> int:
        return int(self.example.max()) + 1 if self.num_steps else 0

    def movable(self, i: int) -> Bool[Tensor, " position"]:
        """Positions of step ``i`` that metrics may perturb (not special tokens)."""
        return ~self.special[i]

    def order(self, i: int) -> Int[Tensor, " movable"]:
        """Movable positions of step ``i`` from the highest score to the lowest (ties: earlier first)."""
        movable = self.movable(i).nonzero().flatten()
        values = self.scores[i][movable]
        ranks = torch.sort(-values, stable=True).indices
        return movable[ranks]


def _check_output(out: FeatureAttributionOutput) -> None:
    if not isinstance(out, FeatureAttributionOutput):
        raise InvalidArgumentError(
            "out",
            f"expected a FeatureAttributionOutput, got {type(out).__name__}",
            "pass the result of model.attribute(...)",
        )
    changed = [a for a in out.provenance.aggregations if a.startswith(POSITIONAL_AGGREGATIONS)]
    if changed:
        raise InvalidArgumentError(
            "out",
            f"scores were aggregated ({changed[0]}), so a column is no longer one token",
            "evaluate the token-level result, before aggregating it to words/spans/sentences",
        )
    if any(seq.is_unit_level for seq in out.sequences):
        raise InvalidArgumentError(
            "out",
            f"rows explain units of several tokens ({out.provenance.explain}); the metrics score one token per row",
            "evaluate a token-level result (attribute with explain='tokens')",
        )
    if not any(seq.num_steps for seq in out.sequences):
        raise InvalidArgumentError(
            "out", "the result explains no generated token", "attribute at least one generated token"
        )


def collect_steps(out: FeatureAttributionOutput, every: int = 1) -> EvalSteps:
    """Every ``every``-th explained step of every sequence of ``out`` (token-level scores only)."""
    _check_output(out)
    check_positive_int("every", every, "every=2 to evaluate every second step")
    prefixes, scores, special, targets, example, step = [], [], [], [], [], []
    for e, seq in enumerate(out.sequences):
        for j, p in enumerate(seq.target_positions):
            if j % every:
                continue
            row = seq.scores[j, :p].float()
            prefixes.append(seq.input_ids[:p].clone())
            scores.append(torch.nan_to_num(row, nan=0.0))
            special.append(seq.held_fixed[:p].clone())
            targets.append(int(seq.input_ids[p]))
            example.append(e)
            step.append(j)
    return EvalSteps(
        prefixes,
        scores,
        special,
        torch.tensor(targets, dtype=torch.long),
        torch.tensor(example, dtype=torch.long),
        torch.tensor(step, dtype=torch.long),
    )
