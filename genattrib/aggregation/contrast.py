"""Contrast two attributions of the same sequences: ``out_a - out_b``.

Both results must hold the same sequences (same tokens, ids, prompt lengths and explained
steps); they typically differ in the target or contrast (``attributed_fn``, ``contrast_target``)
or in the method. The result keeps ``a``'s tokens and provenance (with the step recorded):

* ``scores`` (and ``granular_scores`` when both kept them) are ``a - b``; NaN stay NaN;
* step scores equal in both are kept once; otherwise ``a``'s are kept under their names and
  ``b``'s are added as ``"b:<name>"``, merged later with the rule ``b`` has for ``<name>``
  (recorded in ``provenance.step_score_rules``);
* both must have had the same aggregation steps (``provenance.aggregations``).

Example:
    >>> paris = model.attribute(prompt, target=" Paris", attributed_fn="logprob")
    >>> rome = model.attribute(prompt, target=" Paris", attributed_fn="contrast_logprob_diff",
    ...                        contrast_target=" Rome")
    >>> (rome - paris).show()
    Sequence 0  ·Paris  (2 explained × 8 tokens)
    ...
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from genattrib.aggregation.base import Aggregator, check_output, copy_sequence, recorded
from genattrib.aggregation.segments import step_rule
from genattrib.errors import InvalidArgumentError
from genattrib.output.attribution import FeatureAttributionOutput
from genattrib.output.sequence import SequenceAttribution

__all__ = ["Pair", "difference", "incompatibility"]


def incompatibility(a: SequenceAttribution, b: SequenceAttribution) -> str | None:
    """What makes ``a`` and ``b`` impossible to subtract, or None when they match.

    Example:
        >>> seq = out.sequences[0]
        >>> incompatibility(seq, seq) is None
        True
        >>> incompatibility(seq, seq.steps(1))
        'they explain different steps (3 from step 0 vs 2 from step 1)'
    """
    if a.tokens != b.tokens:
        if len(a.tokens) != len(b.tokens):
            return f"they have {len(a.tokens)} and {len(b.tokens)} tokens"
        k = next(i for i, (x, y) in enumerate(zip(a.tokens, b.tokens)) if x != y)
        return f"their tokens differ at position {k} ({a.tokens[k]!r} vs {b.tokens[k]!r})"
    if not torch.equal(a.input_ids.cpu(), b.input_ids.cpu()):
        return "their token ids differ"
    if a.prompt_length != b.prompt_length:
        return f"their prompts have {a.prompt_length} and {b.prompt_length} tokens"
    if (a.step_start, a.num_steps) != (b.step_start, b.num_steps):
        return (
            f"they explain different steps ({a.num_steps} from step {a.step_start} vs "
            f"{b.num_steps} from step {b.step_start})"
        )
    return None


def _step_scores(a: SequenceAttribution, b: SequenceAttribution) -> dict[str, torch.Tensor]:
    merged = {name: values.clone() for name, values in a.step_scores.items()}
    for name, values in b.step_scores.items():
        mine = a.step_scores.get(name)
        same = (
            mine is not None
            and mine.shape == values.shape
            and bool(((mine == values) | (mine.isnan() & values.isnan())).all())
        )
        if not same:
            merged[f"b:{name}"] = values.clone()
    return merged


def _step_score_rules(
    a: FeatureAttributionOutput, b: FeatureAttributionOutput, sequences: list[SequenceAttribution]
) -> dict[str, str]:
    """``a``'s recorded rules, and for each score ``b:<name>`` kept from ``b`` the rule ``b`` uses."""
    kept = {k for seq in sequences for k in seq.step_scores}
    names = sorted({name for seq in b.sequences for name in seq.step_scores if f"b:{name}" in kept})
    return {
        **a.provenance.step_score_rules,
        **{f"b:{n}": step_rule(n, recorded=b.provenance.step_score_rules) for n in names},
    }


def _difference(a: SequenceAttribution, b: SequenceAttribution) -> SequenceAttribution:
    granular = None
    if (
        a.granular_scores is not None
        and b.granular_scores is not None
        and a.granular_scores.shape == b.granular_scores.shape
    ):
        granular = a.granular_scores - b.granular_scores.to(a.granular_scores)
    return copy_sequence(
        a,
        scores=a.scores - b.scores.to(a.scores),
        granular_scores=granular,
        step_scores=_step_scores(a, b),
    )


def _label(out: FeatureAttributionOutput) -> str:
    p = out.provenance
    return f"method={p.method!r}, attributed_fn={p.attributed_fn!r}, attributed_fn_args={p.attributed_fn_args!r}"


def difference(a: FeatureAttributionOutput, b: FeatureAttributionOutput) -> FeatureAttributionOutput:
    """``a - b`` per score (see the module docstring); error saying what differs when the two
    results do not hold the same sequences.

    Example:
        >>> difference(out, out).sequences[0].scores.nan_to_num().abs().max().item()
        0.0
    """
    check_output(a, "pair")
    check_output(b, "pair")
    if len(a) != len(b):
        raise InvalidArgumentError(
            "pair", f"the results hold {len(a)} and {len(b)} sequences", "contrast attributions of the same prompts"
        )
    if a.provenance.aggregations != b.provenance.aggregations:
        raise InvalidArgumentError(
            "pair",
            f"the results were aggregated differently ({a.provenance.aggregations} vs {b.provenance.aggregations})",
            "subtract first and aggregate the difference, or apply the same aggregation steps to both",
        )
    for index, (x, y) in enumerate(zip(a.sequences, b.sequences)):
        problem = incompatibility(x, y)
        if problem is not None:
            raise InvalidArgumentError(
                "pair",
                f"sequence {index} of the two results cannot be contrasted: {problem}",
                "attribute the same prompt and continuation (e.g. the same target=) with both settings, "
                "and apply the same aggregations to both before subtracting",
            )
    sequences = [_difference(x, y) for x, y in zip(a.sequences, b.sequences)]
    provenance = recorded(a.provenance, f"pair({_label(b)})")
    provenance.step_score_rules = _step_score_rules(a, b, sequences)
    return FeatureAttributionOutput(sequences, provenance)


@dataclass(frozen=True)
class Pair(Aggregator):
    """The pipeline step for contrast: ``Pair(other)(out) == out - other``.

    Example:
        >>> other = model.attribute(prompt, target=" Paris.", method="occlusion")
        >>> out.aggregate("pair", other).provenance.aggregations
        ["pair(method='occlusion', attributed_fn='logprob', attributed_fn_args={})"]
        >>> out.aggregate(Pair(other), "words").sequences[0].tokens
        ['The', ' capital', ' of', ' France', ' is', ' Paris', '.']
    """

    other: FeatureAttributionOutput
    name: ClassVar[str] = "pair"

    def __call__(self, out: FeatureAttributionOutput) -> FeatureAttributionOutput:
        return difference(out, self.other)

    def describe(self) -> str:
        return f"pair({_label(self.other)})"
