"""Attribution along discrete, per-token paths in embedding space (shared by DIG and UDIG).

Every movable source position moves along its own path from its baseline to its token's
embedding, all positions at once; with points ``X^0 .. X^{n-1}`` of a row,

``A_{i,d} = sum_k dF/dx_{i,d}(X^k) (x^{k+1}_{i,d} - x^k_{i,d})``  (k = 0 .. n-2).

Subclasses only say how to find a token's anchors (:meth:`DiscretePathAttributor.search_anchors`);
monotonisation, upscaling, caching and the attribution itself live here. Paths depend only on
(token, baseline), so they are built once per call and shared by every target and row.

Example:
    >>> from genattrib.targets import resolve_target
    >>> forward = ModelForward(hf_model)
    >>> ids = out.sequences[0].input_ids[None]          # explain ' Par' (position 6) from the prompt
    >>> embeds = forward.embed(ids)
    >>> batch = RowBatch(ids, embeds, torch.zeros_like(embeds), torch.tensor([6]), ids[:, 6],
    ...                   torch.zeros_like(ids, dtype=torch.bool), torch.tensor([0]))
    >>> rows, cols = torch.zeros(6, dtype=torch.long), torch.arange(6)   # move the 6 positions before it
    >>> paths = torch.stack([embeds[0, :6] * a for a in (0.0, 0.5, 1.0)], 1)   # (item, point, hidden)
    >>> result = discrete_path_attribution(batch, forward, resolve_target("logprob"), rows, cols, paths)
    >>> result.scores.shape, sorted(result.step_scores)
    (torch.Size([1, 9, 32]), ['baseline_value', 'completeness_error'])
"""

from __future__ import annotations

import hashlib
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from genattrib.devices import execution_device
from genattrib.engine.contract import MethodOutput, MethodParams, RowBatch
from genattrib.engine.forward import ModelForward
from genattrib.engine.lazy_rows import LazyRows
from genattrib.engine.seq2seq_forward import EncoderDecoderForward
from genattrib.errors import InvalidArgumentError
from genattrib.methods.kinds import Gradient, GradientTraits
from genattrib.methods.monotonic_paths import STRATEGIES, monotonic_path
from genattrib.targets import TargetFunction
from genattrib.validation import check_choice, check_int, check_positive_int

_PATH_CACHE_BYTES = 256 << 20


@dataclass
class DiscretePathParams(MethodParams):
    n_anchors: int = 30
    strategy: str = "greedy"
    factor: int = 0
    baseline: Any = None

    def validate(self) -> None:
        check_positive_int("n_anchors", self.n_anchors, "n_anchors=1")
        check_int("factor", self.factor, "factor=1", minimum=0)
        if self.factor > 8:
            raise InvalidArgumentError(
                "factor",
                f"{self.factor} would give {2**self.factor * (self.n_anchors + 1) + 1} points per row",
                "use factor <= 8 (0-2 is typical)",
            )
        check_choice("strategy", self.strategy, STRATEGIES, "anchor strategy")


def discrete_path_attribution(
    batch: RowBatch,
    forward: ModelForward,
    attributed_fn: TargetFunction,
    rows: Int[Tensor, " item"],
    cols: Int[Tensor, " item"],
    paths: Float[Tensor, "item point hidden"],
) -> MethodOutput:
    """Scores along explicit per-position paths: position ``cols[i]`` of row ``rows[i]`` moves along
    ``paths[i]`` (``paths[i, 0]`` its baseline, ``paths[i, -1]`` its input), every other position
    keeps its input embedding; and the completeness error ``sum(A) - (F(X^{n-1}) - F(X^0))`` per
    row. The ``rows x (n - 1)`` model rows are built chunk by chunk as they run
    (:meth:`ModelForward.gradients_by_chunk`), and each chunk's gradients are added into the
    scores at once: no ``[row, point, position, hidden]`` tensor is built."""
    x = batch.input_embeds
    n = int(paths.shape[1])
    steps = n - 1
    paths = paths.to(device=x.device, dtype=x.dtype)  # what the model sees; differences taken from it
    moves = paths.float().diff(dim=1)  # item point-1 hidden
    rows, cols = rows.to(x.device), cols.to(x.device)

    def points(row: Tensor, point: Tensor) -> Tensor:
        """Model rows ``X^point`` of rows ``row`` (both ``[chunk]``)."""
        out = x[row].clone()
        slot, item = (row.unsqueeze(1) == rows.unsqueeze(0)).nonzero(as_tuple=True)
        out[slot, cols[item]] = paths[item, point[slot]]
        return out

    def split(chunk: slice) -> tuple[Tensor, Tensor]:
        index = torch.arange(chunk.start, chunk.stop, device=x.device)
        return index // steps, index % steps

    attributions = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    f_base = torch.empty(batch.num_rows, dtype=torch.float32, device=forward.head_device)

    def add(chunk: slice, values: Tensor, grads: Tensor) -> None:
        row, point = split(chunk)
        slot, item = (row.unsqueeze(1) == rows.unsqueeze(0)).nonzero(as_tuple=True)
        grads = grads.to(x.device)
        attributions.index_put_(
            (rows[item], cols[item]), grads[slot, cols[item]] * moves[item, point[slot]], accumulate=True
        )
        first = point == 0
        f_base[row[first].to(f_base.device)] = values[first.to(values.device)].to(f_base.device)

    targets = batch.explained()
    lazy = LazyRows(batch.num_rows * steps, batch.length, lambda chunk: points(*split(chunk)))
    forward.gradients_by_chunk(lazy, targets.repeat_interleave(steps), attributed_fn, add)
    every = torch.arange(batch.num_rows, device=x.device)
    ends = points(every, torch.full_like(every, n - 1))
    f_input = forward.values(ends, targets.map(lambda t: t.unsqueeze(1)), attributed_fn)[:, 0]
    before = batch.before_target(attributions.device)
    total = (attributions.sum(-1) * before).sum(-1)
    error = total.to(f_input.device) - (f_input - f_base.to(f_input.device))
    return MethodOutput(attributions, {"completeness_error": error, "baseline_value": f_base})


def vocabulary_matrix(forward: ModelForward, embedding: nn.Module | None = None) -> Float[Tensor, "vocab hidden"]:
    """What the model sees for every token id through ``embedding`` (the input embedding by
    default), in float32: the embedding weight itself for a plain ``nn.Embedding`` holding it;
    otherwise, or when accelerate offloaded it, the embedding module applied to every id."""
    if embedding is None:
        embedding = forward.embedding
    if type(embedding) is nn.Embedding and not embedding.weight.is_meta:
        return embedding.weight.detach().float()
    size = int(embedding.weight.shape[0])
    if embedding is forward.embedding:
        embed = lambda ids: forward.embed(ids)  # noqa: E731
    else:
        device = execution_device(embedding)
        embed = lambda ids: embedding(ids.to(device)).detach()  # noqa: E731
    with torch.no_grad():
        blocks = [embed(torch.arange(s, min(size, s + 8192)).unsqueeze(0))[0].float() for s in range(0, size, 8192)]
    return torch.cat(blocks)


def embedding_sides(forward: ModelForward, length: int) -> list[tuple[nn.Module, int, int]]:
    """(embedding module, first position, end) of each side of a row of ``length`` positions: the
    input embedding over the whole row for a decoder-only model; for an encoder-decoder model the
    encoder's over the source and the decoder's over the target prefix (each side's own vocabulary).

    Example:
        >>> [(start, end) for _, start, end in embedding_sides(ModelForward(hf_model), 9)]
        [(0, 9)]
    """
    if not isinstance(forward, EncoderDecoderForward):
        return [(forward.embedding, 0, length)]
    split = forward.base.split(length)
    return [(forward.encoder_embedding, 0, split), (forward.decoder_embedding, split, length)]


class DiscretePathAttributor(Gradient):
    """Base of DIG-style methods: one monotone path per (token, baseline), all positions at once.

    To try another anchor search (e.g. anchors on the straight line), subclass and override
    :meth:`search_anchors`.
    """

    Params = DiscretePathParams
    traits = GradientTraits(
        group_by_sequence=False,  # one path per row
        promises_completeness=True,
        uses_baseline=True,
        step_score_merge={
            "completeness_error": "sum",  # rows merged by sum explain the sum of F, so their errors add up
            "baseline_value": "sum",  # F at the path's start, summed like F
        },
    )

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._vocabs: dict[int, tuple[tuple, Tensor]] = {}  # id(embedding module) -> (its key, its matrix)
        self._paths: dict[tuple[int, int, str], Tensor] = {}

    @property
    def n_points(self) -> int:
        """Points per path: ``2**factor * (n_anchors + 1) + 1``."""
        return 2**self.params.factor * (self.params.n_anchors + 1) + 1

    def path_points(self) -> int:
        return self.n_points  # n - 1 forward + backward rows, one forward row for F(x)

    def vocabulary(self, forward: ModelForward, embedding: nn.Module | None = None) -> Float[Tensor, "vocab hidden"]:
        """The float32 vocabulary matrix of ``embedding`` (the input embedding by default),
        recomputed only when its weight changes (the paths built from it are then dropped)."""
        embedding = forward.embedding if embedding is None else embedding
        weight = embedding.weight
        key = (weight.data_ptr(), weight._version, tuple(weight.shape), str(weight.device), weight.dtype)
        known = self._vocabs.get(id(embedding))
        if known is None or known[0] != key:
            self._vocabs[id(embedding)] = known = (key, vocabulary_matrix(forward, embedding))
            self._paths = {k: v for k, v in self._paths.items() if k[0] != id(embedding)}
        return known[1]

    @abstractmethod
    def search_anchors(
        self,
        words: Int[Tensor, " word"],
        inputs: Float[Tensor, "word hidden"],
        base: Float[Tensor, "word hidden"],
        vocab: Float[Tensor, "vocab hidden"],
        forward: ModelForward,
    ) -> Float[Tensor, "word anchor hidden"]:
        """``n_anchors`` anchor vectors per word, ordered from the word towards the baseline."""

    def paths(
        self,
        words: Int[Tensor, " word"],
        inputs: Float[Tensor, "word hidden"],
        base: Float[Tensor, "word hidden"],
        forward: ModelForward,
        embedding: nn.Module | None = None,
    ) -> Float[Tensor, "word point hidden"]:
        """Monotone paths (baseline first, input last) for each word through the vocabulary of
        ``embedding`` (the input embedding by default), cached by (embedding, token, baseline)."""
        embedding = forward.embedding if embedding is None else embedding
        vocab = self.vocabulary(forward, embedding)
        inputs, base = inputs.to(vocab.device, torch.float32), base.to(vocab.device, torch.float32)
        unique_base, which = torch.unique(base, dim=0, return_inverse=True)
        digests = [hashlib.blake2b(b.cpu().numpy().tobytes(), digest_size=16).hexdigest() for b in unique_base]
        keys = [(id(embedding), int(w), digests[int(k)]) for w, k in zip(words.tolist(), which.tolist())]
        todo = {key: j for j, key in enumerate(keys) if key not in self._paths}
        found = {key: self._paths[key] for key in keys if key in self._paths}
        if todo:
            index = torch.tensor(list(todo.values()), dtype=torch.long, device=vocab.device)
            anchors = self.search_anchors(words.to(vocab.device)[index], inputs[index], base[index], vocab, forward)
            built = monotonic_path(inputs[index], anchors.float(), base[index], self.params.factor)
            found.update({key: built[j] for j, key in enumerate(todo)})
            limit = max(1024, _PATH_CACHE_BYTES // (4 * built.shape[1] * built.shape[2]))
            if len(self._paths) + len(todo) > limit:  # bounded memory: start afresh
                self._paths = {}
            self._paths.update({key: built[j] for j, key in enumerate(todo)})
        return torch.stack([found[key] for key in keys])

    def attribute(self, batch: RowBatch, forward: ModelForward, attributed_fn: TargetFunction) -> MethodOutput:
        rows, cols = batch.source_mask().nonzero(as_tuple=True)
        hidden = batch.input_embeds.shape[-1]
        paths = torch.empty(0, self.n_points, hidden, device=batch.input_embeds.device)
        if rows.numel():
            sides = embedding_sides(forward, batch.length)
            if len(sides) == 1:
                paths = self.paths(
                    batch.input_ids[rows, cols],
                    batch.input_embeds[rows, cols],
                    batch.baseline_embeds[rows, cols],
                    forward,
                )
            else:  # encoder-decoder: each side's tokens walk through that side's own vocabulary
                paths = torch.empty(int(rows.numel()), self.n_points, hidden, dtype=torch.float32)
                for embedding, start, end in sides:
                    on = ((cols >= start) & (cols < end)).nonzero(as_tuple=True)[0]
                    if on.numel():
                        r, c = rows[on], cols[on]
                        got = self.paths(
                            batch.input_ids[r, c],
                            batch.input_embeds[r, c],
                            batch.baseline_embeds[r, c],
                            forward,
                            embedding,
                        )
                        paths = paths.to(got.device)
                        paths[on.to(got.device)] = got
        return discrete_path_attribution(batch, forward, attributed_fn, rows, cols, paths)
