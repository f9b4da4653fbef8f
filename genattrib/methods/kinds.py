"""The kinds of attribution method the engine knows, each with its planning and its default traits.

A method subclasses one kind and states only what is its own: ``name``, ``description``,
``Params``, ``traits`` (the kind's, changed where it differs) and ``attribute``. The kind says how
many model rows a target costs, how many targets a batch holds and what ``model.estimate()``
counts (``rows_per_target``, ``max_batch_targets``, ``planned_rows``), and chooses between shared
forward rows and per-row runs.

* :class:`Gradient`: input gradients at ``path_points()`` points per target (1 for saliency, the
  quadrature for integrated gradients), read from forward rows shared by the targets of a
  sequence (:mod:`genattrib.engine.shared_forward`) or, with ``group_by_sequence=False``, one
  path per row; ``reference_rows`` adds forward-only rows (``F(x)``, ``F(x')``).
* :class:`Propagation`: a gradient kind whose backward runs under module rules
  (:meth:`Propagation.rules`, a family map entered with :func:`~genattrib.engine.model_hooks.hooked`).
* :class:`Perturbation`: forward only; ``rows_per_target`` ablated copies per target.
* :class:`AttentionKind`: attention probabilities captured as the layers run.

Example:
    >>> from genattrib.engine.shared_forward import batch_input_gradients
    >>> class Grad(Gradient):
    ...     name = "grad"
    ...     traits = GradientTraits(default_reduction="l2")
    ...     def attribute(self, batch, forward, attributed_fn):
    ...         return MethodOutput(batch_input_gradients(batch, forward, attributed_fn))
    >>> Grad().traits.granular, Grad().path_points()
    (True, 1)
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from genattrib.engine.contract import MAX_BATCH_TARGETS, Attributor, MethodOutput, MethodTraits
from genattrib.engine.forward import ModelForward
from genattrib.engine.model_hooks import Hook, RuleMap, matched_modules
from genattrib.engine.row_refs import RowRef, has_units
from genattrib.engine.shared_forward import Points, sample_batch_targets, shared_batch_targets, shared_planned_rows
from genattrib.errors import UnsupportedModelError
from genattrib.targets import TargetFunction

#: ``(model rows, tokens per row, backward passes)`` of one kind of model call.
PlannedRows = tuple[int, int, int]


def _resolve(points: Points, length: int) -> int:
    return points(length) if callable(points) else points


@dataclass(frozen=True)
class GradientTraits(MethodTraits):
    """A gradient method's defaults: granular (one score per hidden unit, summed), gradients,
    the targets of a sequence sharing forward rows. ``shares_unit_rows``: unit rows share them
    too (False: each unit row runs its own path)."""

    granular: bool = True
    default_reduction: str = "sum"
    group_by_sequence: bool = True
    shares_unit_rows: bool = True


@dataclass(frozen=True)
class PerturbationTraits(MethodTraits):
    """A perturbation method's defaults: forward only, baseline-replaced copies, whole source units."""

    needs_gradients: bool = False
    uses_baseline: bool = True
    group_by_sequence: bool = True
    ablates_source_units: bool = True
    #: every ablated copy scores all the targets of its batch (occlusion): more targets per batch cost
    #: no more model rows, so batches hold many (:func:`~genattrib.engine.shared_forward.sample_batch_targets`)
    copies_score_every_target: bool = False


@dataclass(frozen=True)
class AttentionTraits(MethodTraits):
    """An attention method's defaults: probabilities read at one query position, no gradients,
    no attributed function."""

    needs_gradients: bool = False
    needs_attentions: bool = True
    explains_attributed_fn: bool = False
    group_by_sequence: bool = True
    supports_units: bool = False


class Gradient(Attributor):
    """Input gradients at ``path_points()`` points per target, shared forward rows or per-row runs."""

    kind: ClassVar[str] = "gradient"
    traits: ClassVar[MethodTraits] = GradientTraits()

    def path_points(self) -> Points:
        """Points one target's gradients are taken at (a number, or a function of the row length)."""
        return 1

    def reference_rows(self, length: int) -> int:
        """Forward-only rows besides the path (``F(x)``, ``F(x')``): per target in per-row runs,
        per batch of a sequence in shared runs."""
        return 0

    def shares_rows(self, refs: Sequence[RowRef]) -> bool:
        """Whether the targets ``refs`` read shared forward rows (else each row runs its own path)."""
        if not self.traits.group_by_sequence:
            return False
        assert isinstance(self.traits, GradientTraits)  # checked when the method registers
        return self.traits.shares_unit_rows or not has_units(refs)

    def rows_per_target(self, length: int) -> int:
        return _resolve(self.path_points(), length) + self.reference_rows(length)

    def max_batch_targets(self, length: int, forward: ModelForward) -> int:
        return shared_batch_targets(length, forward) if self.traits.group_by_sequence else MAX_BATCH_TARGETS

    def planned_rows(
        self, refs: Sequence[RowRef], forward: ModelForward, *, granular: bool = True
    ) -> list[PlannedRows]:
        length = max(r.length for r in refs)
        if self.shares_rows(refs):
            extra = self.reference_rows(length)
            return [*shared_planned_rows(refs, forward, self.path_points()), *([(extra, length, 0)] if extra else [])]
        points = _resolve(self.path_points(), length)
        return [(len(refs) * (points + self.reference_rows(length)), length, len(refs) * points)]


class Propagation(Gradient):
    """Gradients whose backward runs under module rules (LRP style): :meth:`rules` maps module
    classes to :class:`~genattrib.engine.model_hooks.ModuleRule` objects, applied while
    ``attribute`` runs and removed after it."""

    kind: ClassVar[str] = "propagation"

    @abstractmethod
    def rules(self, forward: ModelForward) -> RuleMap:
        """The family map ``{module class: rule}`` for ``forward``'s model."""

    def model_hooks(self, forward: ModelForward) -> Sequence[Hook]:
        return (self.rules(forward),)

    def check_model(self, forward: ModelForward, attributed_fn: TargetFunction) -> None:
        super().check_model(forward, attributed_fn)
        if not matched_modules(forward.model, self.rules(forward)):
            raise UnsupportedModelError(
                f"method {self.name!r} has rules for no module of {type(forward.model).__name__}, so it would "
                "compute plain gradients; add the model's module classes to its rules() or use another method"
            )


class Perturbation(Attributor):
    """Forward only: ``rows_per_target(length)`` ablated copies of a target's row, no backward pass."""

    kind: ClassVar[str] = "perturbation"
    traits: ClassVar[MethodTraits] = PerturbationTraits()

    @abstractmethod
    def rows_per_target(self, length: int) -> int:
        """Model rows (ablated copies and references) one target of ``length`` tokens costs."""

    def max_batch_targets(self, length: int, forward: ModelForward) -> int:
        assert isinstance(self.traits, PerturbationTraits)  # checked when the method registers
        if self.traits.copies_score_every_target:
            return sample_batch_targets(length, forward)
        return MAX_BATCH_TARGETS

    def planned_rows(
        self, refs: Sequence[RowRef], forward: ModelForward, *, granular: bool = True
    ) -> list[PlannedRows]:
        length = max(r.length for r in refs)
        rows = self.rows_per_target(length) * (1 if self.traits.group_by_sequence else len(refs))
        return [(rows, length, rows if self.traits.needs_gradients else 0)]


class AttentionKind(Attributor):
    """Attention probabilities captured as the layers run (one row per target unless stated)."""

    kind: ClassVar[str] = "attention"
    traits: ClassVar[MethodTraits] = AttentionTraits()

    def rows_per_target(self, length: int) -> int:
        return 1


__all__ = [
    "AttentionKind",
    "AttentionTraits",
    "Gradient",
    "GradientTraits",
    "MethodOutput",
    "Perturbation",
    "PerturbationTraits",
    "PlannedRows",
    "Propagation",
]
