"""Run suffixes over a shared clean prefix cache: perturbed rows that equal a clean row up to
their first changed position recompute only the positions from there on.

* :func:`perturbed_values` (occlusion, SIG's reference values, any ablation): copies of one
  sequence with some positions at the baseline. The clean sequence runs once and records its
  K/V; each copy reruns only ``[first dropped position, end)``.
* :func:`moved_gradients` (SIG): rows that move one position ``i`` along a path and need only
  the gradient at ``i``. Positions before ``i`` come from the clean K/V (no gradient), so
  forward and backward cover the suffix only.

Rows are grouped and run by the planner's suffix skeleton
(:func:`~genattrib.engine.planner.plan_suffixes`, :func:`~genattrib.engine.planner.run_suffixes`);
each group goes through :meth:`ModelForward.run_chunked` (so a chunk that runs out of memory is
halved and retried) and counts in ``rows_run``. Both return ``None`` when the model cannot reuse its cache
(:func:`~genattrib.engine.kv_cache.cache_keyword`) or when the cost model says the full rows are
as cheap; callers then run the full rows.

Example:
    >>> from genattrib.targets import resolve_target
    >>> fwd, ids = ModelForward(hf_model), out.sequences[0].input_ids              # 9 tokens
    >>> x = fwd.embed(ids[None])[0]
    >>> targets = Explained.tokens(torch.tensor([6, 7, 8]), ids[6:9])             # 3 targets
    >>> drop = torch.eye(9, dtype=torch.bool)[1:]              # occlude positions 1..8, one per row
    >>> values = perturbed_values(fwd, x, torch.zeros_like(x), drop, targets, resolve_target("logprob"))
    >>> values is None or tuple(values.shape) == (8, 3)        # None: reuse does not pay, run the full rows
    True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from genattrib.engine.cost_model import BACKWARD_CALL, BATCHED_BACKWARD
from genattrib.engine.explained import Explained
from genattrib.engine.forward import ModelForward, no_gradient_error
from genattrib.engine.kv_cache import PrefixKV, cache_keyword, new_cache
from genattrib.engine.planner import Group, plan_suffixes, run_suffixes
from genattrib.targets import TargetFunction

#: A forward+backward row in forward passes: a lone input-gradient backward pass costs about a forward pass.
GRADIENT_PASSES = 1.0 + BACKWARD_CALL + BATCHED_BACKWARD


def read_span(targets: Explained) -> tuple[Int[Tensor, " row"], Int[Tensor, " row"]]:
    """The first and last position whose hidden state each row's value reads (``position - 1``
    of its valid slots)."""
    read = (targets.positions.cpu() - 1).clamp(min=0)
    mask = targets.mask.cpu()
    big = int(read.max()) + 1 if read.numel() else 1
    return read.masked_fill(~mask, big).amin(-1), read.masked_fill(~mask, -1).amax(-1)


def shifted(targets: Explained, start: int) -> Explained:
    """``targets`` as read from a suffix starting at position ``start``."""
    return dataclasses.replace(targets, positions=targets.positions - start)


def record_prefix(
    forward: ModelForward,
    keyword: str,
    embeds: Float[Tensor, "row position hidden"],
    targets: Explained | None,
    attributed_fn: TargetFunction,
) -> tuple[PrefixKV, Float[Tensor, "row k"] | None]:
    """Clean K/V of ``embeds`` and, with ``targets`` (``[row, k, m]``), their values."""
    parts: list[PrefixKV] = []
    values: list[Tensor] = []

    def run(chunk: slice) -> None:
        cache = new_cache()
        kwargs = {keyword: cache}
        if targets is None:
            forward.hidden_states(embeds[chunk], **kwargs)
        else:
            values.append(forward.unit_values(embeds[chunk], targets.select(chunk), attributed_fn, **kwargs).float())
        parts.append(PrefixKV.of(keyword, cache))

    n_logits = 1 if targets is None else targets.slots * int(targets.positions.shape[1])
    forward.run_chunked(int(embeds.shape[0]), int(embeds.shape[1]), run, grad=False, n_logits=n_logits)
    return PrefixKV.concat(parts), (torch.cat(values).cpu() if values else None)


def lowered_start(first: int, lo: Int[Tensor, " row"], hi: Int[Tensor, " row"]) -> int:
    """``first`` moved back to the start of every target read both before and from it (such a
    target's value needs its earlier slots recomputed along with the rest)."""
    while True:
        straddle = lo[(hi >= first) & (lo < first)]
        if straddle.numel() == 0:
            return first
        first = int(straddle.min())


def perturbed_values(
    forward: ModelForward,
    x: Float[Tensor, "position hidden"],
    base: Float[Tensor, "position hidden"],
    drop: Bool[Tensor, "sample position"],
    targets: Explained,
    attributed_fn: TargetFunction,
) -> Float[Tensor, "sample row"] | None:
    """Every target's value (``targets``: ``[row, m]``, all read from one sequence ``x``) on
    copies of ``x`` with the ``drop`` positions of each sample at ``base``; ``None`` when
    reusing the clean prefix is not possible or not worth it. Returned on the CPU, float32."""
    keyword = cache_keyword(forward)
    if keyword is None or drop.shape[0] == 0:
        return None
    lo, hi = read_span(targets)
    end = int(hi.max()) + 1
    changed = drop[:, :end].cpu()
    first = torch.where(
        changed.any(-1), changed.float().argmax(-1), torch.full_like(changed[:, 0], end, dtype=torch.long)
    )
    first = [lowered_start(int(f), lo, hi) for f in first.tolist()]
    todo = [n for n, f in enumerate(first) if f < end]
    n_logits = int(targets.positions.numel())
    plan = plan_suffixes(
        forward,
        [first[n] for n in todo],
        [end] * len(todo),
        [int(x.shape[0])] * int(drop.shape[0]),
        lambda length: forward.rows_per_chunk(length, grad=False, n_logits=n_logits),
        prefix=(1, end),
    )
    if not plan.reuse:
        return None
    kv, clean = record_prefix(forward, keyword, x[None, :end], targets.shared(1), attributed_fn)
    values = clean.expand(drop.shape[0], -1).clone()
    rows_of = torch.tensor(todo, dtype=torch.long)

    def prepare(group: Group) -> tuple[Callable[[slice], None], int]:
        s = group.start
        reached = (hi >= s).nonzero(as_tuple=True)[0]
        part = shifted(targets.select(reached.to(targets.positions.device)), s)
        samples = rows_of[torch.tensor(group.items, dtype=torch.long)]

        def run(chunk: slice) -> None:
            rows = samples[chunk]
            mask = drop[rows.to(drop.device), s:end].to(x.device).unsqueeze(-1)
            embeds = torch.where(mask, base[s:end].unsqueeze(0), x[s:end].unsqueeze(0))
            kwargs = kv.expand(None, int(rows.shape[0]), s)
            out = forward.unit_values(embeds, part.shared(int(rows.shape[0])), attributed_fn, **kwargs)
            values[rows.unsqueeze(1), reached.unsqueeze(0)] = out.float().cpu()

        return run, int(part.positions.numel())

    run_suffixes(forward, plan, prepare, grad=False)
    return values


def moved_gradients(
    forward: ModelForward,
    x: Float[Tensor, "row position hidden"],
    rows: Int[Tensor, " item"],
    cols: Int[Tensor, " item"],
    moving: Float[Tensor, "item step hidden"],
    targets: Explained,
    attributed_fn: TargetFunction,
) -> Float[Tensor, "item step hidden"] | None:
    """Gradient of each item's value (``targets``: ``[item, m]``) w.r.t. its moved position, for
    copies of ``x[rows]`` with position ``cols`` set to each of ``moving``; ``None`` when
    reusing the clean prefix is not possible or not worth it. Float32, on ``x``'s device."""
    keyword = cache_keyword(forward)
    if keyword is None or rows.numel() == 0:
        return None
    items, steps, length = int(rows.shape[0]), int(moving.shape[1]), int(x.shape[1])
    lo, hi = read_span(targets)
    ends = (hi + 1).tolist()
    first = torch.minimum(cols.cpu(), lo).tolist()
    used, slot = torch.unique(rows.cpu(), return_inverse=True)
    clean_len = max(ends)
    plan = plan_suffixes(
        forward,
        first,
        ends,
        [length] * items,
        lambda n: forward.rows_per_chunk(n, grad=True, n_logits=targets.slots),
        per_item=steps,
        passes=GRADIENT_PASSES,
        prefix=(int(used.numel()), clean_len),
    )
    if not plan.reuse:
        return None
    kv, _ = record_prefix(forward, keyword, x[used.to(x.device), :clean_len], None, attributed_fn)
    grads = torch.empty(items, steps, x.shape[-1], dtype=torch.float32, device=x.device)

    def prepare(group: Group) -> tuple[Callable[[slice], None], int]:
        s, e, members = group.start, group.end, torch.tensor(group.items, dtype=torch.long)
        part = shifted(targets.select(members.to(targets.positions.device)), s).map(lambda t: t.unsqueeze(1))

        def run(chunk: slice) -> None:
            flat = torch.arange(chunk.start, chunk.stop)
            local, step = flat // steps, flat % steps
            item = members[local]
            n = int(item.shape[0])
            leaf = moving[item.to(moving.device), step.to(moving.device)].detach().clone().requires_grad_(True)
            at = (cols[item.to(cols.device)].to(x.device) - s, torch.arange(n, device=x.device))
            with torch.enable_grad():
                embeds = x[rows[item.to(rows.device)].to(x.device), s:e].index_put((at[1], at[0]), leaf)
                kwargs = kv.expand(slot[item].to(x.device), n, s)
                value = forward.unit_values(embeds, part.select(local), attributed_fn, **kwargs)[:, 0]
                if not value.requires_grad:
                    raise no_gradient_error(type(forward.model).__name__)
                (grad,) = torch.autograd.grad(value.sum(), leaf)
            grads[item.to(grads.device), step.to(grads.device)] = grad.float().to(grads.device)

        return run, targets.slots

    run_suffixes(forward, plan, prepare, per_item=steps, grad=True)
    return grads
