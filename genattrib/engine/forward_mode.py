"""Directional derivatives of every target's value with forward-mode autodiff: one pass per
direction serves all the targets that read the row.

Reverse mode pays one backward pass per target; a method that needs each target's gradient only
along one known direction per row (SIG with its default ``sum`` over the hidden size:
``sum_d (x_i - x'_i)_d dF/dx_{i,d}`` is the derivative of ``F`` along ``x_i - x'_i``) gets every
target's derivative from a single forward pass carrying a tangent (``torch.autograd.forward_ad``).

* :func:`forward_mode` is the scope such a pass runs in: dual numbers on, gradients off,
  attention computed with plain operations (PyTorch's fused attention kernels have no
  forward-mode formula) through :class:`~genattrib.engine.attention_capture.AttentionRouting`, and
  each ``linear`` layer run as one matrix product for value and tangent together. Nothing is
  patched outside the block.
* :func:`supports_forward_mode` probes once per :class:`ModelForward` that a 5-token row gives
  the same derivatives both ways; a model that fails it keeps the reverse-mode path.
* :func:`moved_position_sums` is SIG's use: copies of one row with position ``i`` moved along
  a straight path; only the suffix from ``i`` runs, over the clean prefix's KV cache when the
  model allows it (positions before ``i`` carry no tangent).

Example:
    >>> from genattrib.targets import resolve_target
    >>> fwd, ids = ModelForward(hf_model), out.sequences[0].input_ids             # 9 tokens
    >>> x = fwd.embed(ids[None])[0]
    >>> targets = Explained.tokens(torch.tensor([6, 7, 8]), ids[6:9])            # 3 targets
    >>> alphas, weights = torch.tensor([0.5]), torch.ones(1)                   # one midpoint
    >>> sums = moved_position_sums(fwd, x, torch.zeros_like(x), torch.arange(1, 6), alphas, weights,
    ...                            targets, resolve_target("logprob"))
    >>> sums.shape                                     # (moved position, target); None: no forward mode
    torch.Size([5, 3])
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor
from torch.autograd import forward_ad
from torch.overrides import TorchFunctionMode

from genattrib.engine.attention_capture import AttentionProbe, AttentionRouting
from genattrib.engine.cost_model import DUAL_PASS
from genattrib.engine.explained import Explained
from genattrib.engine.forward import ModelForward
from genattrib.engine.kv_cache import cache_keyword
from genattrib.engine.model_hooks import ModelHook, hooked
from genattrib.engine.planner import Group, plan_suffixes, run_suffixes
from genattrib.engine.prefix_cache import lowered_start, read_span, record_prefix, shifted
from genattrib.targets import TargetFunction

#: Rows of a dual pass hold value and tangent: half as many fit the forward-only row budget.
DUAL_ROW_FACTOR = 2
PROBE_LENGTH = 5


class _PairedLinear(TorchFunctionMode):
    """``F.linear`` on a dual input: one matrix product for value and tangent stacked (the generic
    forward-mode rule runs three, one of them on the weight's zero tangent)."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is not F.linear or len(args) < 2:
            return func(*args, **kwargs)
        x, weight = args[0], args[1]
        bias = args[2] if len(args) > 2 else kwargs.get("bias")
        primal, tangent = forward_ad.unpack_dual(x)
        if (
            tangent is None
            or x.dim() < 2
            or any(p is not None and forward_ad.unpack_dual(p).tangent is not None for p in (weight, bias))
        ):
            return func(*args, **kwargs)
        both = F.linear(torch.cat([primal, tangent.to(primal.dtype)]), weight)
        value, derivative = both.split(int(primal.shape[0]))
        if bias is not None:
            value = value + bias
        return forward_ad.make_dual(value, derivative)


class PairedLinear(ModelHook):
    """The model hook that runs each ``linear`` of a dual input as one product (:class:`_PairedLinear`)."""

    def attach(self, model: torch.nn.Module, stack: contextlib.ExitStack) -> None:
        stack.enter_context(_PairedLinear())


@contextlib.contextmanager
def forward_mode(forward: ModelForward) -> Iterator[None]:
    """Scope of a forward-mode pass of ``forward``'s model (dual level, no autograd graph,
    attention with plain operations, paired ``linear`` products: two model hooks entered with
    :func:`~genattrib.engine.model_hooks.hooked`); all restored on exit."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.no_grad())
        stack.enter_context(forward_ad.dual_level())
        stack.enter_context(hooked(forward.model, AttentionRouting(AttentionProbe()), PairedLinear()))
        yield


def directional_values(
    forward: ModelForward,
    embeds: Float[Tensor, "row position hidden"],
    tangents: Float[Tensor, "row position hidden"],
    targets: Explained,
    attributed_fn: TargetFunction,
    **model_kwargs: object,
) -> tuple[Float[Tensor, "row k"], Float[Tensor, "row k"]]:
    """Each target's value (``targets``: ``[row, k, m]``) and its derivative along ``tangents``;
    call inside :func:`forward_mode`. Float32."""
    dual = forward_ad.make_dual(embeds, tangents.to(embeds.dtype))
    value, derivative = forward_ad.unpack_dual(forward.unit_values(dual, targets, attributed_fn, **model_kwargs))
    if derivative is None:  # no target depends on the inputs (e.g. every target before the moved position)
        derivative = torch.zeros_like(value)
    return value.float(), derivative.float()


def supports_forward_mode(forward: ModelForward, attributed_fn: TargetFunction) -> bool:
    """Whether forward mode runs on this model and matches reverse mode on a probe row, for this
    attributed function (probed once per model wrapper; any failure means: use reverse mode)."""
    if forward.capabilities.get("forward_mode") is False:  # a runner without forward mode (encoder-decoder)
        return False
    key = ("forward_mode", attributed_fn)
    if key not in forward.capabilities:
        try:
            ok = _probe(forward, attributed_fn)
        except Exception:  # noqa: BLE001 - an operation without a forward-mode rule, an unusual model ...
            ok = False
        forward.capabilities[key] = ok
    return bool(forward.capabilities[key])


def _probe(forward: ModelForward, attributed_fn: TargetFunction) -> bool:
    ids = torch.arange(1, PROBE_LENGTH + 1) % max(2, forward.vocab_size)
    x = forward.embed(ids[None]).detach().float().to(forward.dtype)
    generator = torch.Generator().manual_seed(0)
    tangent = torch.randn(x.shape, generator=generator).to(device=x.device, dtype=x.dtype)
    last = torch.tensor([PROBE_LENGTH - 1])
    targets = Explained.tokens(last, ids[last], ids[last - 1]).map(lambda t: t[None])  # a contrast for contrastive fns
    with forward_mode(forward):
        _, derivative = directional_values(forward, x, tangent, targets, attributed_fn)
    leaf = x.clone().requires_grad_(True)
    with torch.enable_grad():
        value = forward.unit_values(leaf, targets, attributed_fn)
        (grad,) = torch.autograd.grad(value.sum(), leaf)
    want = (grad.float() * tangent.float()).sum()
    tol = 1e-4 if forward.dtype == torch.float32 else 5e-2
    return bool((derivative.sum() - want).abs() <= tol * (1.0 + want.abs()))


def moved_position_sums(
    forward: ModelForward,
    x: Float[Tensor, "position hidden"],
    base: Float[Tensor, "position hidden"],
    cols: Int[Tensor, " col"],
    alphas: Float[Tensor, " step"],
    weights: Float[Tensor, " step"],
    targets: Explained,
    attributed_fn: TargetFunction,
) -> Float[Tensor, "col row"] | None:
    """``sum_s weights[s] * (x_i - x'_i) . dF/dx_i`` at ``x`` with only position ``i = cols[c]``
    moved to ``x'_i + alphas[s] (x_i - x'_i)`` (``x'`` = ``base``), for every target of
    ``targets`` (``[row, m]``, all read from ``x``): each (position, step) copy is one dual pass
    that serves every target. ``None`` when the model has no forward mode. Float32, on the CPU.

    A copy equals ``x`` before ``i``, so only positions from ``i`` on run, over the clean row's KV
    cache where the model allows it; copies of nearby positions share a call
    (:func:`~genattrib.engine.planner.plan_suffixes`)."""
    if not supports_forward_mode(forward, attributed_fn):
        return None
    steps, k = int(alphas.shape[0]), int(targets.positions.shape[0])
    sums = torch.zeros(int(cols.shape[0]), k, dtype=torch.float32)
    lo, hi = read_span(targets)
    end = int(hi.max()) + 1
    todo = [c for c, i in enumerate(cols.tolist()) if i < end]  # a position no target reads after: 0
    if not todo:
        return sums
    n_logits = int(targets.positions.numel())
    keyword = cache_keyword(forward)  # suffixes over the clean prefix's K/V, where the planner says so
    plan = plan_suffixes(
        forward,
        [lowered_start(int(cols[c]), lo, hi) for c in todo],
        [end] * len(todo),
        [end] * len(todo),
        lambda n: forward.rows_per_chunk(n, grad=False, n_logits=n_logits) // DUAL_ROW_FACTOR,
        per_item=steps,
        passes=DUAL_PASS,
        prefix=(1, end),
        reusable=keyword is not None,
    )
    kv = record_prefix(forward, keyword, x[None, :end], None, attributed_fn)[0] if plan.reuse and keyword else None
    a = alphas.to(device=x.device, dtype=x.dtype)
    w = weights.to(torch.float32)
    todo_cols = torch.tensor(todo, dtype=torch.long)

    def prepare(group: Group) -> tuple[Callable[[slice], None], int]:
        s = group.start
        reached = (hi >= s).nonzero(as_tuple=True)[0]
        part = shifted(targets.select(reached.to(targets.positions.device)), s)
        items = todo_cols[torch.tensor(group.items, dtype=torch.long)]  # indices into cols

        def run(chunk: slice) -> None:
            flat = torch.arange(chunk.start, chunk.stop)
            item, step = items[flat // steps], flat % steps
            n = int(item.shape[0])
            at = cols[item].to(x.device) - s
            rows = torch.arange(n, device=x.device)
            direction = (x - base)[cols[item].to(x.device)]
            embeds = x[s:end].unsqueeze(0).repeat(n, 1, 1)
            embeds[rows, at] = base[cols[item].to(x.device)] + a[step.to(x.device)].unsqueeze(-1) * direction
            tangents = torch.zeros_like(embeds)
            tangents[rows, at] = direction
            kwargs = {} if kv is None else kv.expand(None, n, s)
            _, derivative = directional_values(forward, embeds, tangents, part.shared(n), attributed_fn, **kwargs)
            weighted = derivative.cpu() * w[step].unsqueeze(-1)
            where = (item.unsqueeze(1).expand_as(weighted), reached.cpu().unsqueeze(0).expand_as(weighted))
            sums.index_put_(where, weighted, accumulate=True)  # the steps of one position add up

        return run, int(part.positions.numel())

    with forward_mode(forward):
        run_suffixes(forward, plan, prepare, per_item=steps, grad=False)
    return sums
