"""The contract every attribution method follows.

The engine hands a method a :class:`RowBatch` (one row per explained target token, possibly
from several sequences) and a :class:`~genattrib.engine.forward.ModelForward`; the method
returns a :class:`MethodOutput` with one score per (row, source position[, hidden unit]).
Methods never tokenize and never generate.

Example:
    >>> class Constant(Attributor):
    ...     name = "constant"
    ...     def attribute(self, batch, forward, attributed_fn):
    ...         return MethodOutput(torch.ones(batch.input_ids.shape))
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from genattrib.engine.attention_capture import check_attention_support
from genattrib.engine.explained import Explained
from genattrib.engine.forward import ModelForward, no_gradient_error
from genattrib.engine.model_hooks import Hook, hooked
from genattrib.engine.row_refs import RowRef
from genattrib.errors import InvalidArgumentError
from genattrib.seeding import DEFAULT_SEED, content_generator
from genattrib.targets import TargetContext, TargetFunction

#: Targets one batch holds at most (the planner's cap).
MAX_BATCH_TARGETS = 64
#: Memory the per-row tensors of a batch of targets that share forward rows may take (their
#: embeddings, baselines and float32 gradients: three rows of ``length x hidden`` per target).
SHARED_BATCH_BYTES = 256 << 20


@dataclass
class RowBatch:
    """Rows to explain. Row ``r`` explains the token at ``target_positions[r]`` from the
    positions before it; positions at or after it (padding included) are ignored. A unit row
    (``units`` set) explains the combined value of several generated tokens, the first at
    ``target_positions[r]``, from the positions before that first token; the unit's own tokens
    stay as they are (see :meth:`movable`).
    ``held_fixed`` marks the positions held fixed (special tokens, unless the call attributes them):
    never moved or perturbed, never attributed.

    Example:
        >>> ids = torch.tensor([[1, 5, 6, 7], [1, 5, 6, 7]])
        >>> embeds = torch.zeros(2, 4, 3)
        >>> special = torch.tensor([[True, False, False, False]] * 2)
        >>> positions, targets, sequence = torch.tensor([2, 3]), torch.tensor([6, 7]), torch.tensor([0, 0])
        >>> batch = RowBatch(ids, embeds, embeds, positions, targets, special, sequence)
        >>> batch.before_target()
        tensor([[ True,  True, False, False],
                [ True,  True,  True, False]])
        >>> batch.source_mask()
        tensor([[False,  True, False, False],
                [False,  True,  True, False]])
        >>> batch.predicting_positions()
        tensor([1, 2])
    """

    input_ids: Int[Tensor, "row position"]
    input_embeds: Float[Tensor, "row position hidden"]
    baseline_embeds: Float[Tensor, "row position hidden"]
    target_positions: Int[Tensor, " row"]
    target_ids: Int[Tensor, " row"]
    held_fixed: Bool[Tensor, "row position"]
    sequence_index: Int[Tensor, " row"]
    contrast_ids: Int[Tensor, " row"] | None = None
    seed: int = DEFAULT_SEED
    units: Explained | None = None  # unit rows: the unit's positions (first = target_positions)
    source_groups: Int[Tensor, "row position"] | None = None  # source unit of each position (-1: none)
    # whether the engine keeps per-hidden-unit scores; when False a granular method may return its
    # scores already reduced by its ``default_reduction`` (``[row, position]``) if that is cheaper
    granular: bool = True

    def explained(self) -> Explained:
        """What each row explains, for :class:`ModelForward` (one slot per row unless units)."""
        if self.units is not None:
            return self.units
        return Explained.tokens(self.target_positions, self.target_ids, self.contrast_ids)

    def unit_ends(self, device: torch.device | str | None = None) -> Int[Tensor, " row"]:
        """The last explained position of each row (``target_positions`` for a token row)."""
        device = self.input_ids.device if device is None else device
        if self.units is None:
            return self.target_positions.to(device)
        return self.units.positions.masked_fill(~self.units.mask, -1).amax(-1).to(device)

    def select(self, rows: Int[Tensor, " selected"]) -> RowBatch:
        """The batch of rows ``rows`` only (same seed, so the same draws per row).

        Example:
            >>> ids, embeds = torch.tensor([[1, 5, 6, 7]] * 2), torch.zeros(2, 4, 3)
            >>> special, targets = torch.zeros(2, 4, dtype=torch.bool), torch.tensor([6, 7])
            >>> batch = RowBatch(ids, embeds, embeds, torch.tensor([2, 3]), targets, special, torch.tensor([0, 0]))
            >>> batch.select(torch.tensor([1])).target_positions
            tensor([3])
        """
        pick = lambda t: None if t is None else t[rows.to(t.device)]  # noqa: E731
        return dataclasses.replace(
            self,
            input_ids=pick(self.input_ids),
            input_embeds=pick(self.input_embeds),
            baseline_embeds=pick(self.baseline_embeds),
            target_positions=pick(self.target_positions),
            target_ids=pick(self.target_ids),
            held_fixed=pick(self.held_fixed),
            sequence_index=pick(self.sequence_index),
            contrast_ids=pick(self.contrast_ids),
            units=None if self.units is None else self.units.select(rows),
            source_groups=pick(self.source_groups),
        )

    @property
    def num_rows(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[1])

    def movable(self) -> Bool[Tensor, "row position hidden"]:
        """Positions whose embedding may change, as a broadcastable mask: not special tokens and
        not the tokens of a unit row's own unit (held as they are: the unit is explained from
        what comes before it)."""
        device = self.input_embeds.device
        keep = ~self.held_fixed.to(device)
        if self.units is not None:
            cols = torch.arange(self.length, device=device).unsqueeze(0)
            own = (cols >= self.target_positions.to(device).unsqueeze(1)) & (cols < self.unit_ends(device).unsqueeze(1))
            keep = keep & ~own
        return keep.unsqueeze(-1)

    def before_target(self, device: torch.device | str | None = None) -> Bool[Tensor, "row position"]:
        """Positions before each row's target, special tokens included, on ``device`` (default:
        that of ``input_ids``); targets at 2 and 3 of 4 positions give ``[[T, T, F, F], [T, T, T, F]]``."""
        device = self.input_ids.device if device is None else device
        return torch.arange(self.length, device=device).unsqueeze(0) < self.target_positions.to(device).unsqueeze(1)

    def source_mask(self, device: torch.device | str | None = None) -> Bool[Tensor, "row position"]:
        """Positions that may be attributed (perturbed, moved): before the row's target and not
        special; with a special first token, ``before_target()`` minus column 0."""
        device = self.input_ids.device if device is None else device
        return self.before_target(device) & ~self.held_fixed.to(device)

    def predicting_positions(self, device: torch.device | str | None = None) -> Int[Tensor, " row"]:
        """The position whose logits predict each row's target: ``target_positions - 1`` (at
        least 0), on ``device`` (default: that of ``input_ids``); targets ``[2, 3]`` give ``[1, 2]``."""
        device = self.input_ids.device if device is None else device
        return (self.target_positions.to(device) - 1).clamp(min=0)

    def row_generator(self, row: int, device: torch.device) -> torch.Generator:
        """A generator seeded from (seed, the row's tokens up to its target): the same row gets
        the same draws whichever batch or sequence order it comes in."""
        position = int(self.target_positions[row])
        tokens = self.input_ids[row, :position].cpu().numpy().astype("int64").tobytes()
        return content_generator(
            self.seed, tokens + int(self.target_ids[row]).to_bytes(8, "little", signed=True), device
        )


@dataclass
class MethodOutput:
    """Scores for a :class:`RowBatch` and optional per-row step scores."""

    scores: Float[Tensor, "row position"] | Float[Tensor, "row position hidden"]
    step_scores: dict[str, Float[Tensor, " row"]] = field(default_factory=dict)


@dataclass
class MethodParams:
    """Base of each method's parameters (a dataclass validated in ``validate``)."""

    def validate(self) -> None:  # pragma: no cover - trivial default
        """Raise :class:`InvalidArgumentError` for a bad value."""

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Tensor):
                value = f"tensor{tuple(value.shape)}"
            out[f.name] = value
        return out


def _target_keeps_gradients(attributed_fn: TargetFunction, vocab_size: int) -> bool:
    """Whether ``attributed_fn`` on logits that require gradients returns a value that does too
    (one row of random logits; a function that fails on them is left to fail later, in context)."""
    logits = torch.randn(1, max(2, vocab_size), generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    ids = torch.zeros(1, dtype=torch.long)
    try:
        with torch.enable_grad():
            value = attributed_fn(TargetContext(logits, ids, ids + 1 if attributed_fn.needs_contrast else None))
    except Exception:  # noqa: BLE001 - a probe only: the real call reports the function's own error
        return True
    return not isinstance(value, Tensor) or value.requires_grad


@dataclass(frozen=True)
class MethodTraits:
    """What the engine, ``estimate()``, the listing and the docs read about a method: one frozen
    object per method class, with defaults per kind (see :mod:`genattrib.methods.kinds`).

    Example:
        >>> traits = MethodTraits(needs_gradients=False, uses_baseline=True)
        >>> dataclasses.replace(traits, stochastic=True).stochastic
        True
    """

    granular: bool = False  # returns a hidden dimension
    # keep_granular=None keeps its granular scores when they fit; False: only when asked (its
    # reduced scores have a faster path, see RowBatch.granular)
    keeps_granular_by_default: bool = True
    default_reduction: str = "none"  # how the hidden dimension is reduced by default
    needs_gradients: bool = True
    needs_attentions: bool = False  # reads attention probabilities (checked in check_model)
    explains_attributed_fn: bool = True  # False: scores do not depend on attributed_fn (attention)
    uses_baseline: bool = False
    promises_completeness: bool = False  # scores add up to F(x) - F(x'): warn when they do not
    default_attributed_fn: str = "logprob"  # what attribute(attributed_fn=None) explains with this method
    group_by_sequence: bool = False  # rows of one sequence share a batch
    stochastic: bool = False  # draws random numbers from ``seed`` (listed by describe_methods)
    requires: frozenset[str] = frozenset()  # resources the engine binds (see :meth:`Attributor.bind`)
    supports_units: bool = True  # can explain unit rows (explain="sentences" ...)
    ablates_source_units: bool = False  # perturbs whole source units (sources=...) when given
    step_score_merge: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # score -> merge rule

    def __post_init__(self) -> None:
        object.__setattr__(self, "requires", frozenset(self.requires))
        object.__setattr__(self, "step_score_merge", MappingProxyType(dict(self.step_score_merge)))

    def to_dict(self) -> dict[str, Any]:
        """Plain values (sorted ``requires``, a dict ``step_score_merge``), e.g. for ``describe_methods``."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["requires"] = sorted(self.requires)
        out["step_score_merge"] = dict(self.step_score_merge)
        return out


class Attributor(ABC):
    """One attribution method. Subclasses set ``name``, ``description``, ``Params``, ``traits``
    and ``attribute``; a kind (:mod:`genattrib.methods.kinds`) supplies the planning."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    Params: ClassVar[type[MethodParams]] = MethodParams
    traits: ClassVar[MethodTraits] = MethodTraits()
    kind: ClassVar[str] = ""  # set by each kind (genattrib.methods.kinds): gradient, perturbation ...

    def __init__(self, **params: Any) -> None:
        self._check_names(params)
        self.params = self.Params(**params)
        self.params.validate()

    @classmethod
    def _check_names(cls, params: Mapping[str, Any]) -> None:
        valid = set(cls.param_names())
        unknown = sorted(set(params) - valid)
        if unknown:
            raise InvalidArgumentError(
                unknown[0],
                f"method {cls.name!r} has no parameter {unknown[0]!r}",
                f"use one of: {', '.join(sorted(valid)) or '(none)'}",
            )

    @classmethod
    def param_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls.Params)]

    def replace(self, **params: Any) -> Attributor:
        """A validated copy with some parameters changed; ``self`` is left as it is.

        Example:
            >>> from genattrib.methods import get_method
            >>> ig = get_method("integrated_gradients", n_steps=8)
            >>> ig.replace(n_steps=16).params.n_steps, ig.params.n_steps
            (16, 8)
        """
        self._check_names(params)
        copy = type(self).__new__(type(self))
        copy.__dict__.update(self.__dict__)
        copy.params = dataclasses.replace(self.params, **params)
        copy.params.validate()
        return copy

    def bind(self, **resources: Any) -> Attributor:
        """A copy with the resources named in :attr:`requires` filled in, for each parameter the
        user left ``None`` (a value the user gave wins). Resources not in ``requires`` are refused.

        Example:
            >>> from genattrib.methods import get_method
            >>> from genattrib.methods.vocabulary import Vocabulary
            >>> get_method("reagent").bind(vocabulary=Vocabulary(size=8)).params.vocabulary.size
            8
        """
        extra = sorted(set(resources) - self.traits.requires)
        if extra:
            raise InvalidArgumentError(
                extra[0],
                f"method {self.name!r} does not require the resource {extra[0]!r}",
                f"it requires: {', '.join(sorted(self.traits.requires)) or '(nothing)'}",
            )
        missing = {k: v for k, v in resources.items() if getattr(self.params, k) is None}
        return self.replace(**missing) if missing else self

    def rows_per_target(self, length: int) -> int:
        """Model rows one target costs (used to size batches)."""
        return 1

    def max_batch_targets(self, length: int, forward: ModelForward) -> int:
        """The most targets one batch of rows of ``length`` tokens may hold."""
        return MAX_BATCH_TARGETS

    def planned_rows(
        self, refs: Sequence[RowRef], forward: ModelForward, *, granular: bool = True
    ) -> list[tuple[int, int, int]]:
        """What one planned batch of targets costs: ``(model rows, tokens per row, backward passes)``
        for each kind of model call it makes (read by ``model.estimate()``; must match the rows
        :class:`ModelForward` counts when the batch runs). ``granular``: whether per-hidden-unit
        scores are kept (:attr:`RowBatch.granular`)."""
        length = max(r.length for r in refs)
        rows = self.rows_per_target(length) * (1 if self.traits.group_by_sequence else len(refs))
        return [(rows, length, rows if self.traits.needs_gradients else 0)]

    def check_model(self, forward: ModelForward, attributed_fn: TargetFunction) -> None:
        """Raise before heavy work if this method cannot run on the model/target."""
        if self.traits.needs_gradients and not attributed_fn.differentiable:
            raise InvalidArgumentError(
                "attributed_fn",
                f"{attributed_fn.name!r} is not differentiable, so {self.name!r} cannot explain it",
                "use a differentiable target (logprob, probability, logit ...) "
                "or a forward-only method such as occlusion",
            )
        if self.traits.needs_gradients and not _target_keeps_gradients(attributed_fn, forward.vocab_size):
            raise InvalidArgumentError(
                "attributed_fn",
                f"{attributed_fn.name!r} returns values without gradients (built from a new tensor, detached, or "
                f"under no_grad), so {self.name!r} cannot differentiate it; the model is not the cause",
                "compute the value from ctx.logits with torch operations, or use a forward-only method such as "
                "occlusion",
            )
        if self.traits.needs_gradients and not forward.gradients_reach_inputs():
            raise no_gradient_error(type(forward.model).__name__, f"method {self.name!r}")
        if self.traits.needs_attentions:
            check_attention_support(forward)

    def model_hooks(self, forward: ModelForward) -> Sequence[Hook]:
        """How the model's modules compute while this method runs (none by default): family maps
        ``{module class: rule}`` and model hooks (:mod:`genattrib.engine.model_hooks`), entered
        by :meth:`run` around :meth:`attribute` and undone after it, also when it raises."""
        return ()

    def run(self, batch: RowBatch, forward: ModelForward, attributed_fn: TargetFunction) -> MethodOutput:
        """:meth:`attribute` under :meth:`model_hooks` (what the engine calls)."""
        hooks = self.model_hooks(forward)
        if not hooks:
            return self.attribute(batch, forward, attributed_fn)
        with hooked(forward.model, *hooks):
            return self.attribute(batch, forward, attributed_fn)

    @abstractmethod
    def attribute(self, batch: RowBatch, forward: ModelForward, attributed_fn: TargetFunction) -> MethodOutput:
        """Scores for every row of ``batch``."""
