"""One attributed sequence: its tokens, score matrix and step scores.

Example:
    >>> seq = out.sequences[0]
    >>> seq.tokens
    ['The', ' capital', ' of', ' Fr', 'ance', ' is', ' Par', 'is', '.']
    >>> seq.scores.shape                            # (generated steps, source positions)
    torch.Size([3, 9])
    >>> seq.scores[0, seq.prompt_length:]           # NaN: positions at/after the first target
    tensor([nan, nan, nan])

``scores`` and ``granular_scores`` may be given as a :class:`~genattrib.output.scores.ScoreStore`
instead of a tensor: the top-k :class:`~genattrib.output.scores.SparseScores` of
``attribute(..., top_k_scores=k)``, or the rows of a streamed result on disk
(``attribute(..., stream_to=...)``). Reading the attribute densifies the store once, on first
access, and the store caches the dense tensor (``seq.__dict__`` holds the store itself);
:meth:`SequenceAttribution.score_row` reads one row without densifying the rest, and
:attr:`SequenceAttribution.sparse_scores` gives the top-k form.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from genattrib.errors import InvalidArgumentError
from genattrib.output.scores import ScoreStore, SparseScores, tensors_equal
from genattrib.output.source_unit_scores import SourceUnitScores, sum_over_units

#: ``token_roles`` of an encoder-decoder result: the encoder's positions, then the decoder's.
SOURCE_SIDE, TARGET_SIDE = "source", "target"


@dataclass
class SequenceAttribution:
    """Scores for every explained generated token of one sequence.

    ``scores[j, i]`` is how much source position ``i`` contributed to the generated token at
    position ``prompt_length + step_start + j``. Positions at or after that token are NaN.

    A unit-level result (``attribute(..., explain="sentences")``) sets ``target_spans``: row
    ``j`` then explains the tokens ``target_spans[j] = (start, stop)`` together (their combined
    value, e.g. the sum of their log-probs), and positions at or after ``start`` are NaN.

    ``special_tokens_mask`` marks the special tokens (BOS, chat markers); ``held_fixed`` the
    positions held fixed while attributing: the special tokens, or none with
    ``attribute_special_tokens=True``.
    """

    input_ids: Int[Tensor, " position"]
    tokens: list[str]
    prompt_length: int
    scores: Float[Tensor, "generated position"] | ScoreStore
    step_scores: dict[str, Float[Tensor, " generated"]] = field(default_factory=dict)
    held_fixed: Bool[Tensor, " position"] | None = None
    granular_scores: Float[Tensor, "generated position hidden"] | ScoreStore | None = None
    step_start: int = 0
    generated_text: str = ""
    token_roles: list[str] | None = None  # chat prompts: message role of each token
    target_spans: list[tuple[int, int]] | None = None  # unit rows: the tokens [start, stop) each row explains
    source_spans: list[tuple[int, int]] | None = None  # source units (sources=...): [start, stop) of positions
    special_tokens_mask: Bool[Tensor, " position"] | None = None  # special tokens, attributed or not

    def __post_init__(self) -> None:
        n = int(self.input_ids.shape[0])
        if len(self.tokens) != n:
            raise ValueError(f"{len(self.tokens)} tokens for {n} ids")
        shape = self.scores_shape
        if len(shape) != 2 or shape[1] != n:
            raise ValueError(f"scores must be (generated, {n}), got {shape}")
        if not (isinstance(self.prompt_length, int) and 0 <= self.prompt_length <= n):
            raise ValueError(f"prompt_length {self.prompt_length!r} is not a position in [0, {n}]")
        if not (isinstance(self.step_start, int) and self.step_start >= 0):
            raise ValueError(f"step_start {self.step_start!r} is not a step index >= 0")
        dtype = getattr(self.__dict__["scores"], "dtype", None)
        if isinstance(dtype, torch.dtype) and not dtype.is_floating_point:
            raise ValueError(f"scores must be floating point, got {dtype}")
        if self.held_fixed is None:
            self.held_fixed = torch.zeros(n, dtype=torch.bool)
        if self.special_tokens_mask is None:  # results saved before it was recorded: held_fixed held it
            self.special_tokens_mask = self.held_fixed.clone()
        for name in ("held_fixed", "special_tokens_mask"):
            if tuple(getattr(self, name).shape) != (n,):
                raise ValueError(f"{name} has shape {tuple(getattr(self, name).shape)}, not ({n},)")
        if self.token_roles is not None and len(self.token_roles) != n:
            raise ValueError(f"{len(self.token_roles)} token roles for {n} tokens")
        if self.target_spans is not None:
            self.target_spans = [(int(a), int(b)) for a, b in self.target_spans]
            if len(self.target_spans) != shape[0]:
                raise ValueError(f"{len(self.target_spans)} target spans for {shape[0]} rows")
            bounds = [self.prompt_length] + [x for span in self.target_spans for x in span] + [n]
            if any(b < a for a, b in zip(bounds, bounds[1:])) or any(a >= b for a, b in self.target_spans):
                raise ValueError(f"target spans {self.target_spans[:5]} are not ordered, disjoint and generated")
        if self.source_spans is not None:
            self.source_spans = [(int(a), int(b)) for a, b in self.source_spans]
            edges = [0] + [x for span in self.source_spans for x in span] + [n]
            if any(b < a for a, b in zip(edges, edges[1:])) or any(a >= b for a, b in self.source_spans):
                raise ValueError(f"source spans {self.source_spans[:5]} are not ordered and disjoint within {n}")

    # --- stored scores ------------------------------------------------------------------
    @property
    def special_mask(self) -> Bool[Tensor, " position"]:
        """The old name of :attr:`held_fixed` (kept for one release; it warns)."""
        warnings.warn(
            "SequenceAttribution.special_mask is now held_fixed (the positions held fixed while attributing)",
            FutureWarning,
            stacklevel=2,
        )
        return self.held_fixed

    @property
    def scores_shape(self) -> tuple[int, ...]:
        """The shape of ``scores``, without densifying a store."""
        return tuple(int(d) for d in self.__dict__["scores"].shape)

    @property
    def granular_scores_shape(self) -> tuple[int, ...] | None:
        """The shape of ``granular_scores`` (None when not kept), without densifying a store."""
        stored = self.__dict__["granular_scores"]
        return None if stored is None else tuple(int(d) for d in stored.shape)

    @property
    def sparse_scores(self) -> SparseScores | None:
        """The top-k form of ``scores`` (``attribute(..., top_k_scores=k)``), with each row's residual; else None."""
        stored = self.__dict__["scores"]
        return stored.sparse() if isinstance(stored, ScoreStore) else None

    def score_row(self, j: int) -> Float[Tensor, " position"]:
        """Row ``j`` of ``scores``; a store not densified yet reads only that row."""
        stored = self.__dict__["scores"]
        if isinstance(stored, ScoreStore) and not stored.is_cached:
            return stored.row(range(self.num_steps)[j])
        return self.scores[j]

    # --- views -------------------------------------------------------------------------
    @property
    def structure_mask(self) -> Bool[Tensor, " position"]:
        """Positions that are structure rather than content: special tokens (attributed or not) and
        chat-template text (``token_roles`` ``"template"``: markers, role names, a default system
        prompt). Summaries, top-k lists and colour scales leave them out unless
        ``include_special_tokens=True``; their scores are kept as they are.

        Example:
            >>> seq = SequenceAttribution(torch.arange(4), ["<s>", "system", "Hi", "!"], 3, torch.zeros(1, 4),
            ...                           special_tokens_mask=torch.tensor([True, False, False, False]),
            ...                           token_roles=["template", "template", "user", "assistant"])
            >>> seq.structure_mask.tolist()
            [True, True, False, False]
        """
        mask = self.special_tokens_mask.clone()
        if self.token_roles is not None:
            mask |= torch.tensor([role == "template" for role in self.token_roles], dtype=torch.bool)
        return mask

    @property
    def num_steps(self) -> int:
        """Number of explained generated steps (rows of ``scores``)."""
        return self.scores_shape[0]

    @property
    def source_tokens(self) -> list[str]:
        return list(self.tokens)

    @property
    def prompt_tokens(self) -> list[str]:
        return self.tokens[: self.prompt_length]

    @property
    def text(self) -> str:
        """The whole sequence as text (the tokens joined)."""
        return "".join(self.tokens)

    @property
    def offsets(self) -> list[tuple[int, int]]:
        """Character span of every token in :attr:`text`."""
        spans, start = [], 0
        for token in self.tokens:
            spans.append((start, start + len(token)))
            start += len(token)
        return spans

    @property
    def generated_tokens(self) -> list[str]:
        return self.tokens[self.prompt_length :]

    @property
    def spans(self) -> list[tuple[int, int]]:
        """The positions ``[start, stop)`` each row explains (one token each, or the units)."""
        if self.target_spans is not None:
            return list(self.target_spans)
        first = self.prompt_length + self.step_start
        return [(first + j, first + j + 1) for j in range(self.num_steps)]

    @property
    def target_positions(self) -> list[int]:
        """Source position of each explained generated token (the first token of each unit)."""
        return [start for start, _ in self.spans]

    # --- encoder-decoder sides --------------------------------------------------------------
    @property
    def source_length(self) -> int | None:
        """An encoder-decoder result's source (encoder) positions, which come first (``token_roles``
        ``"source"``; the decoder start token and the target tokens are ``"target"``); ``None`` for a
        decoder-only result.

        Example:
            >>> seq = SequenceAttribution(torch.arange(4), ["Hi", "</s>", "<pad>", "Hallo"], 3, torch.zeros(1, 4),
            ...                           token_roles=["source", "source", "target", "target"])
            >>> seq.source_length, seq.source_scores.shape, seq.target_scores.shape
            (2, torch.Size([1, 2]), torch.Size([1, 2]))
        """
        roles = self.token_roles
        if not roles or roles[0] != SOURCE_SIDE or TARGET_SIDE not in roles:
            return None
        length = roles.index(TARGET_SIDE)
        if any(role != TARGET_SIDE for role in roles[length:]):
            return None
        return length

    @property
    def is_encoder_decoder(self) -> bool:
        """Whether this is an encoder-decoder result (source and target sides: :attr:`source_length`)."""
        return self.source_length is not None

    def _side(self, source: bool) -> Float[Tensor, "generated side"]:
        length = self.source_length
        if length is None:
            raise InvalidArgumentError(
                "source_scores" if source else "target_scores",
                "this result is from a decoder-only model (one sequence, no source and target sides)",
                "read seq.scores",
            )
        return self.scores[:, :length] if source else self.scores[:, length:]

    @property
    def source_scores(self) -> Float[Tensor, "generated source"]:
        """Encoder-decoder results: the scores of the source tokens (``scores[:, :source_length]``)."""
        return self._side(True)

    @property
    def target_scores(self) -> Float[Tensor, "generated side"]:
        """Encoder-decoder results: the scores of the target prefix (decoder start and target tokens;
        NaN unless attributed with ``attribute_prefix=True``)."""
        return self._side(False)

    @property
    def target_tokens(self) -> list[str]:
        """The text each row explains: its token, or its unit's tokens joined."""
        return ["".join(self.tokens[a:b]) for a, b in self.spans]

    @property
    def is_unit_level(self) -> bool:
        """Whether rows explain units of several tokens (``explain=`` other than tokens)."""
        return self.target_spans is not None

    @property
    def target_ids(self) -> Int[Tensor, " generated"]:
        return self.input_ids[self.target_positions]

    def source_unit_scores(self) -> SourceUnitScores:
        """The (rows × source units) matrix of a result attributed with ``sources=``: each row's
        scores summed over each unit, with the units' and rows' texts
        (:class:`~genattrib.output.source_unit_scores.SourceUnitScores`).

        Example:
            >>> out = model.attribute(prompt, target=" Paris.", method="occlusion", sources=[(0, 3), (3, 6)])
            >>> out.sequences[0].source_unit_scores().unit_texts
            ['The capital of', ' France is']
        """
        if self.source_spans is None:
            raise InvalidArgumentError(
                "sources",
                "this result records no source units (it was attributed without sources=)",
                "attribute with sources='sentences' / 'documents' / spans, or aggregate by 'sentences'",
            )
        units = list(self.source_spans)
        roles = self.token_roles
        return SourceUnitScores(
            scores=sum_over_units(self.scores, units),
            unit_spans=units,
            unit_texts=["".join(self.tokens[a:b]) for a, b in units],
            row_spans=self.spans,
            row_texts=self.target_tokens,
            unit_roles=None if roles is None else [_role(roles[a:b]) for a, b in units],
        )

    def steps(self, start: int | None = None, stop: int | None = None) -> SequenceAttribution:
        """Keep only explained steps ``start:stop`` (indices into the rows of ``scores``)."""
        rows = range(self.num_steps)[slice(start, stop)]
        first = rows.start if len(rows) else 0
        sel = slice(rows.start, rows.stop)
        spans = None if self.target_spans is None else self.target_spans[sel]
        step_start = self.step_start + first
        if spans is not None:
            step_start = spans[0][0] - self.prompt_length if spans else self.step_start
        stored = self.__dict__["scores"]
        return replace(
            self,
            target_spans=spans,
            scores=stored.select(sel) if isinstance(stored, ScoreStore) else self.scores[sel].clone(),
            granular_scores=None if self.granular_scores is None else self.granular_scores[sel].clone(),
            step_scores={k: v[sel].clone() for k, v in self.step_scores.items()},
            step_start=step_start,
        )

    def equals(self, other: SequenceAttribution) -> bool:
        """Exact equality (NaN equals NaN) of every field."""
        same = tensors_equal

        sparse_a, sparse_b = self.sparse_scores, other.sparse_scores
        if (sparse_a is None) != (sparse_b is None) or (sparse_a is not None and not sparse_a.equals(sparse_b)):
            return False
        return (
            self.tokens == other.tokens
            and self.token_roles == other.token_roles
            and self.prompt_length == other.prompt_length
            and self.step_start == other.step_start
            and self.generated_text == other.generated_text
            and self.target_spans == other.target_spans
            and self.source_spans == other.source_spans
            and same(self.input_ids, other.input_ids)
            and same(self.scores, other.scores)
            and same(self.held_fixed, other.held_fixed)
            and same(self.special_tokens_mask, other.special_tokens_mask)
            and same(self.granular_scores, other.granular_scores)
            and self.step_scores.keys() == other.step_scores.keys()
            and all(same(v, other.step_scores[k]) for k, v in self.step_scores.items())
        )


def _role(roles: list[str]) -> str:
    """A unit's role: its most common role other than ``template`` (else ``template``)."""
    content = [r for r in roles if r != "template"]
    return max(content, key=content.count) if content else "template"


def _stored(name: str) -> property:
    """A dataclass field held (in the instance ``__dict__``, under its own name) as a tensor or a
    :class:`ScoreStore`; reading it gives a tensor, a store densified once (the store caches it)."""

    def get(self: SequenceAttribution) -> Any:
        value = self.__dict__[name]
        return value.cached() if isinstance(value, ScoreStore) else value

    def set(self: SequenceAttribution, value: Any) -> None:
        self.__dict__[name] = value

    return property(get, set, doc=f"``{name}`` as a dense tensor (a store is densified on first access)")


# After @dataclass: the generated __init__ assigns through these properties.
SequenceAttribution.scores = _stored("scores")  # type: ignore[assignment]
SequenceAttribution.granular_scores = _stored("granular_scores")  # type: ignore[assignment]
