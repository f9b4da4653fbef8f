"""Run the wrapped model on rows of embeddings: target values, gradients, attentions.

Rows are right-padded prefixes; a causal model lets padding after the explained position be
ignored, so no attention mask is needed. Logits are computed only at the positions that are
explained. Rows are processed in chunks; a chunk that runs out of memory is halved and retried.

Example:
    >>> from genattrib.targets import resolve_target
    >>> fwd = ModelForward(hf_model)
    >>> ids = out.sequences[0].input_ids[None]          # 1 row: "The capital of France is Paris."
    >>> embeds, positions = fwd.embed(ids), torch.tensor([6])   # explain ' Par' at position 6
    >>> targets = Explained.tokens(positions, ids[:, 6])
    >>> values, grads = fwd.values_and_grads(embeds, targets, resolve_target("logprob"))
    >>> values.shape, grads.shape
    (torch.Size([1]), torch.Size([1, 9, 32]))
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from genattrib.devices import (
    execution_device,
    is_oom,
    layer_shares,
    offloaded_bytes,
    release_cached_memory,
    rows_within_budget,
)
from genattrib.engine.explained import Explained, combine
from genattrib.engine.host_memory import free_host_bytes
from genattrib.engine.lazy_rows import LazyRows
from genattrib.errors import UnsupportedModelError
from genattrib.targets import TargetContext, TargetFunction

MAX_ROWS_PER_CHUNK = 256
#: Working memory of a chunk of forward-only rows on the CPU (see ``_available_bytes``).
CPU_FORWARD_BYTES = 1 << 30
#: Logits held at once when a row explains many positions (a long unit, or many shared targets).
LOGIT_SLICE_BYTES = 64 << 20


def _available_bytes(device: torch.device, grad: bool = True) -> int:
    """Working memory a chunk of rows may use: 70% of free GPU memory; on the CPU a quarter of
    free host memory (:func:`~genattrib.engine.host_memory.free_host_bytes`: free RAM, the
    cgroup's limit and ``RLIMIT_AS``, whichever is smallest), at most 4 GiB for forward+backward
    rows and :data:`CPU_FORWARD_BYTES` for forward-only ones (CPU matmuls gain little from more
    rows once a chunk holds thousands of tokens, while long rows would otherwise grow the process
    by gigabytes)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.7)
    return int(min(free_host_bytes() * 0.25, (4 << 30) if grad else CPU_FORWARD_BYTES))


def _power_of_two(rows: int) -> int:
    """The largest power of two ``<= rows`` (1 for ``rows < 2``)."""
    return 1 << (max(1, rows).bit_length() - 1)


def no_gradient_error(model: str, method: str = "this method") -> Exception:
    return UnsupportedModelError(
        f"{method} needs gradients, but no gradient reaches the input embeddings of {model} (its forward "
        "runs without autograd, e.g. under torch.no_grad); use a forward-only method: reagent, occlusion or lime"
    )


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode for the block and restore its training flag after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


class ModelForward:
    """Thin runner over a Hugging Face causal LM used by every attribution method."""

    def __init__(
        self, model: nn.Module, max_rows: int | None = None, probed: dict[object, object] | None = None
    ) -> None:
        self.model = model
        self.config = model.config
        self.base = self.body(model)
        self.embedding = model.get_input_embeddings()
        self.head = model.get_output_embeddings()
        if self.head is None:
            raise UnsupportedModelError(f"{type(model).__name__} has no output embeddings (LM head)")
        # where the modules compute (an offloaded module's weights sit on ``meta``, not there)
        self.input_device = execution_device(self.embedding)
        self.head_device = execution_device(self.head)
        self.layer_shares = layer_shares(model)  # the row budget holds on every device (``rows_per_chunk``)
        self.offloaded = offloaded_bytes(model)  # weights accelerate loads onto each device per forward
        self.dtype = self.embedding.weight.dtype
        self.user_max_rows = max_rows
        self._oom_cap: int | None = None
        self.rows_run = 0  # rows through the model (forward-only and forward+backward)
        self.grad_rows_run = 0  # of which forward+backward
        self.backward_rows_run = 0  # backward passes: one per grad row, or per shared row's target
        self.model_calls = 0  # chunks run (successful model calls through ``run_chunked``)
        self.max_chunk_rows = 0  # the largest chunk run
        self.oom_retries = 0  # chunks halved after running out of memory
        # What probes of the model found (engine/kv_cache.py, cost_model.py): the wrapper's own dict
        # (``ModelParts.probed``) keeps them for its lifetime, so a call does not probe again.
        self.capabilities: dict[object, object] = {} if probed is None else probed

    @staticmethod
    def body(model: nn.Module) -> nn.Module:
        """The module that maps ``inputs_embeds`` to the last hidden states (the model without its LM head)."""
        return getattr(model, model.base_model_prefix)

    # --- sizes -----------------------------------------------------------------------------
    @property
    def hidden_size(self) -> int:
        return int(self.embedding.weight.shape[1])

    @property
    def vocab_size(self) -> int:
        return int(self.head.weight.shape[0])

    def row_bytes(self, length: int, grad: bool = True, n_logits: int = 1) -> int:
        """Rough peak memory of one row of ``length`` tokens through the model.

        A forward+backward row (``grad``) keeps every layer's activations for the backward
        pass, and their gradients; a forward-only row under ``no_grad`` holds about one layer's
        working set at a time, so it is sized on its own, many times smaller.
        """
        cfg = self.config.get_text_config() if hasattr(self.config, "get_text_config") else self.config
        layers = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", 12)
        hidden = self.hidden_size
        inter = getattr(cfg, "intermediate_size", None) or getattr(cfg, "n_inner", None) or 4 * hidden
        heads = getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_head", 8)
        per_layer = 12 * hidden + 4 * inter + 2 * heads * length  # per token, one layer
        bytes_per = max(4, torch.finfo(self.dtype).bits // 8)
        logits = min(4 * 3 * self.vocab_size * n_logits, 3 * LOGIT_SLICE_BYTES)  # fp32 logits, softmax, gradient
        if grad:
            return 2 * bytes_per * length * layers * per_layer + logits
        return bytes_per * length * (2 * per_layer + 2 * hidden) + logits

    def rows_per_chunk(self, length: int, grad: bool = True, n_logits: int = 1) -> int:
        """How many rows of ``length`` tokens to run at once (``grad``: forward+backward rows):
        ``max_rows`` when the user gave it, else the largest power of two the memory budget allows
        (so small changes in free memory between identical calls rarely change the chunks, which
        can change the last digits of the results: docs/architecture.md, "Chunking and results").

        On a model split across devices every device the layers run on must fit its part: a
        forward+backward row keeps each layer's activations where that layer runs (a device holds
        its share of the layers' part of the row), a forward-only row holds one layer's working set
        at a time, wherever that layer runs (every device must fit the whole row). Forward+backward
        rows also leave out the offloaded weights a device loads (:func:`offloaded_bytes`): they stay
        there until the backward pass."""
        if self.user_max_rows is not None:
            rows = self.user_max_rows
        else:
            held = self.offloaded if grad else {}
            budget = lambda device: max(0, _available_bytes(device, grad) - held.get(device, 0))  # noqa: E731
            shares = self.layer_shares if grad else dict.fromkeys(self.layer_shares, 1.0)
            rows = rows_within_budget(self.row_bytes(length, grad, n_logits), shares, budget)
            rows = _power_of_two(min(rows, MAX_ROWS_PER_CHUNK))
        if self._oom_cap is not None:
            rows = min(rows, self._oom_cap)
        return max(1, rows)

    # --- basic pieces ----------------------------------------------------------------------
    def embed(self, ids: Int[Tensor, "row position"]) -> Float[Tensor, "row position hidden"]:
        with torch.no_grad():
            return self.embedding(ids.to(self.input_device)).detach()

    def head_logits(self, hidden: Float[Tensor, "... hidden"]) -> Float[Tensor, "... vocab"]:
        """Apply the LM head (and the model's logit scaling / soft-capping) to hidden states."""
        logits = self.head(hidden.to(self.head_device))
        scale = getattr(self.model, "logit_scale", None)
        if isinstance(scale, (int, float)) and scale != 1:
            logits = logits * scale
        cap = getattr(self.config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits

    def hidden_states(
        self, embeds: Float[Tensor, "row position hidden"], **kwargs
    ) -> Float[Tensor, "row position hidden"]:
        out = self.base(inputs_embeds=embeds.to(self.input_device), use_cache=False, **kwargs)
        return out[0]

    def logits_at(
        self, embeds: Float[Tensor, "row position hidden"], positions: Int[Tensor, "row k"]
    ) -> Float[Tensor, "row k vocab"]:
        """Logits that predict the tokens at ``positions`` (read at ``positions - 1``)."""
        hidden = self.hidden_states(embeds)
        index = (positions.to(hidden.device) - 1).clamp(min=0)
        picked = hidden.gather(1, index.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
        return self.head_logits(picked)

    def gradients_reach_inputs(self) -> bool:
        """Whether autograd links the logits to the input embeddings (one 1-token forward)."""
        leaf = self.embed(torch.zeros(1, 1, dtype=torch.long)).float().to(self.dtype).requires_grad_(True)
        with torch.enable_grad():
            logits = self.logits_at(leaf, torch.ones(1, 1, dtype=torch.long))
            if not logits.requires_grad:  # e.g. the whole forward runs under no_grad
                return False
            (grad,) = torch.autograd.grad(logits.sum(), leaf, allow_unused=True)
        return grad is not None  # None: the LM head has weights to train, but the inputs are cut off

    # --- the one way to run chunked model calls --------------------------------------------
    def run_chunked(
        self,
        total: int,
        length: int,
        run: Callable[[slice], None],
        *,
        grad: bool,
        n_logits: int = 1,
        backward_per_row: int = 1,
    ) -> None:
        """Call ``run(chunk)`` on consecutive slices covering ``range(total)``.

        Each slice holds as many rows of ``length`` tokens as the row budget allows
        (:meth:`rows_per_chunk`; ``grad`` says whether the rows run forward+backward, else they
        run under ``no_grad``). A chunk that runs out of memory is halved and retried, and later
        chunks stay at the smaller size. Rows are counted in :attr:`rows_run` (and
        :attr:`grad_rows_run`, with ``backward_per_row`` backward passes each in
        :attr:`backward_rows_run`) once their chunk succeeds.

        Example:
            >>> fwd = ModelForward(hf_model, max_rows=4)
            >>> chunks = []
            >>> fwd.run_chunked(10, length=7, run=chunks.append, grad=False)
            >>> chunks, fwd.rows_run
            ([slice(0, 4, None), slice(4, 8, None), slice(8, 10, None)], 10)
        """
        start = 0
        while start < total:
            size = self.rows_per_chunk(length, grad, n_logits)
            chunk = slice(start, min(total, start + size))
            try:
                with contextlib.nullcontext() if grad else torch.no_grad():
                    run(chunk)
            except Exception as error:  # noqa: BLE001 - only OOM is handled
                if not is_oom(error) or size == 1:
                    raise
                self._oom_cap = max(1, size // 2)
                self.oom_retries += 1
                release_cached_memory({self.input_device, self.head_device, *self.layer_shares})
                continue
            self.rows_run += chunk.stop - chunk.start
            self.model_calls += 1
            self.max_chunk_rows = max(self.max_chunk_rows, chunk.stop - chunk.start)
            if grad:
                self.grad_rows_run += chunk.stop - chunk.start
                self.backward_rows_run += (chunk.stop - chunk.start) * backward_per_row
            start = chunk.stop

    def unit_values(
        self,
        embeds: Float[Tensor, "row position hidden"],
        targets: Explained,
        attributed_fn: TargetFunction,
        **model_kwargs: object,
    ) -> Float[Tensor, "row k"]:
        """``attributed_fn`` at every slot of ``targets`` (``[row, k, m]``), combined per unit.

        The LM head runs only on the slots that count (units shorter than the longest are padded
        with masked slots, which are packed away), in slices holding at most :data:`LOGIT_SLICE_BYTES` of logits
        (a unit of 2,000 tokens would otherwise hold 2,000 vocabulary-sized rows); under autograd
        each slice is checkpointed, so its logits are recomputed in the backward pass, not kept.
        ``model_kwargs`` go to the model call (a KV cache of a clean prefix, see ``prefix_cache``).
        """
        return self.unit_values_from_hidden(self.hidden_states(embeds, **model_kwargs), targets, attributed_fn)

    def unit_values_from_hidden(
        self, hidden: Float[Tensor, "row position hidden"], targets: Explained, attributed_fn: TargetFunction
    ) -> Float[Tensor, "row k"]:
        """:meth:`unit_values` from the model's last hidden states (the LM head part only)."""
        r, k, m = targets.positions.shape
        mask = targets.mask.reshape(r, k * m)
        # the LM head runs only on the slots that count: padding slots of short units are packed away
        order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)[:, : max(1, int(mask.sum(-1).max()))]
        pick = lambda t: t.reshape(r, k * m).gather(1, order.to(t.device))  # noqa: E731
        slots = (pick(targets.positions), pick(targets.ids))
        contrast = None if targets.contrast is None else pick(targets.contrast)
        width = int(order.shape[1])
        per = max(1, LOGIT_SLICE_BYTES // (4 * self.vocab_size * max(r, 1)))
        if per >= width:
            packed = self._slot_values(hidden, *slots, contrast, attributed_fn)
        else:
            parts = []
            for start in range(0, width, per):
                part = (slots[0][:, start : start + per], slots[1][:, start : start + per])
                extra = None if contrast is None else contrast[:, start : start + per]
                if hidden.requires_grad:
                    parts.append(
                        checkpoint(self._slot_values, hidden, *part, extra, attributed_fn, use_reentrant=False)
                    )
                else:
                    parts.append(self._slot_values(hidden, *part, extra, attributed_fn))
            packed = torch.cat(parts, 1)
        if width == k * m and bool(mask.all()):
            values = packed  # nothing was packed (token rows): the order is the identity
        else:
            values = packed.new_zeros(r, k * m).scatter(1, order.to(packed.device), packed)
        return combine(values.reshape(r, k, m), targets.mask, attributed_fn.merge)

    def _slot_values(
        self,
        hidden: Float[Tensor, "row position hidden"],
        positions: Int[Tensor, "row slot"],
        ids: Int[Tensor, "row slot"],
        contrast: Int[Tensor, "row slot"] | None,
        attributed_fn: TargetFunction,
    ) -> Float[Tensor, "row slot"]:
        """``attributed_fn`` of the logits that predict the tokens at ``positions``."""
        index = (positions.to(hidden.device) - 1).clamp(min=0)
        logits = self.head_logits(hidden.gather(1, index.unsqueeze(-1).expand(-1, -1, hidden.shape[-1])))
        flat = lambda t: t.reshape(-1).to(logits.device)  # noqa: E731
        ctx = TargetContext(
            logits.reshape(-1, logits.shape[-1]), flat(ids), None if contrast is None else flat(contrast)
        )
        return attributed_fn(ctx).reshape(positions.shape)

    def values(
        self, embeds: Float[Tensor, "row position hidden"], targets: Explained, attributed_fn: TargetFunction
    ) -> Float[Tensor, "row k"]:
        """Values of ``attributed_fn`` (no gradient) for ``k`` explained units per row
        (``targets`` shaped ``[row, k, m]``)."""
        r, k, m = targets.positions.shape
        out = torch.empty(r, k, dtype=torch.float32, device=self.head_device)

        def run(chunk: slice) -> None:
            out[chunk] = self.unit_values(embeds[chunk], targets.select(chunk), attributed_fn).float()

        self.run_chunked(r, embeds.shape[1], run, grad=False, n_logits=k * m)
        return out

    def values_and_grads(
        self, embeds: Float[Tensor, "row position hidden"], targets: Explained, attributed_fn: TargetFunction
    ) -> tuple[Float[Tensor, " row"], Float[Tensor, "row position hidden"]]:
        """Value of ``attributed_fn`` for one explained unit per row (``targets`` shaped
        ``[row, m]``) and its gradient w.r.t. ``embeds``.

        Gradients are returned in float32 whatever the model's dtype.
        """
        values = torch.empty(embeds.shape[0], dtype=torch.float32, device=self.head_device)
        grads = torch.empty(embeds.shape, dtype=torch.float32, device=embeds.device)

        def keep(chunk: slice, value: Tensor, grad: Tensor) -> None:
            values[chunk] = value
            grads[chunk] = grad.to(grads.device)

        self.gradients_by_chunk(LazyRows.of(embeds), targets, attributed_fn, keep)
        return values, grads

    def gradients_by_chunk(
        self,
        rows: LazyRows,
        targets: Explained,
        attributed_fn: TargetFunction,
        consume: Callable[[slice, Float[Tensor, " chunk"], Float[Tensor, "chunk position hidden"]], None],
    ) -> None:
        """:meth:`values_and_grads` for rows built chunk by chunk: each chunk of ``rows`` is built
        inside :meth:`run_chunked` (so the rows of a call never exist all at once, and a chunk that
        runs out of memory is rebuilt at half the size) and its values and float32 gradients go to
        ``consume(chunk, values, grads)``, which reduces them (a weighted sum over path points).

        Example:
            >>> from genattrib.targets import resolve_target
            >>> fwd, ids = ModelForward(hf_model, max_rows=2), out.sequences[0].input_ids[None]
            >>> x = fwd.embed(ids)[0]                                   # 9 tokens
            >>> alphas = torch.linspace(0.2, 1.0, 5)                    # 5 points on the line 0 -> x
            >>> rows = LazyRows(5, 9, lambda chunk: alphas[chunk].view(-1, 1, 1) * x)
            >>> targets = Explained.tokens(torch.full((5,), 6), ids[0, 6].repeat(5))
            >>> total = torch.zeros(9, 32)
            >>> fwd.gradients_by_chunk(rows, targets, resolve_target("logprob"), lambda c, v, g: total.add_(g.sum(0)))
            >>> fwd.model_calls, total.shape                            # chunks of 2, 2 and 1 rows
            (3, torch.Size([9, 32]))
        """
        one_unit = targets.map(lambda t: t.unsqueeze(1))

        def run(chunk: slice) -> None:
            leaf = rows.make(chunk).detach().clone().requires_grad_(True)
            with torch.enable_grad():
                value = self.unit_values(leaf, one_unit.select(chunk), attributed_fn)[:, 0]
                if not value.requires_grad:
                    raise no_gradient_error(type(self.model).__name__)
                (grad,) = torch.autograd.grad(value.sum(), leaf)
            consume(chunk, value.detach().float(), grad.float())

        self.run_chunked(rows.count, rows.length, run, grad=True, n_logits=targets.slots)
