"""The model's KV cache through public transformers API: whether reusing a clean prefix is exact
for this model, recording the K/V of clean rows, and caches of a prefix for a batch of suffixes.

Transformers >= 4.56 runs attention layers over a ``DynamicCache`` passed as ``past_key_values=``
(``cache=`` in recent 5.x); a cache is read by iterating it (``(keys, values, ...)`` per layer)
and built from ``(keys, values)`` pairs (``DynamicCache(pairs)``). Models whose attention is not
plain causal over the whole prefix (sliding windows, chunked or hybrid layers, cross-attention),
that take no cache, or whose cached run does not match the full run on a probe, are refused once
(:func:`cache_keyword` returns ``None``) and callers use the full rows instead.

Example:
    >>> from genattrib.engine.forward import ModelForward
    >>> fwd = ModelForward(hf_model)
    >>> embeds = fwd.embed(out.sequences[0].input_ids[None])              # 1 clean row of 9 tokens
    >>> keyword = cache_keyword(fwd)                      # "past_key_values" or "cache"; None: no reuse
    >>> cache = new_cache()
    >>> full = fwd.hidden_states(embeds, **{keyword: cache})  # the clean row records its K/V
    >>> kv = PrefixKV.of(keyword, cache)
    >>> kwargs = kv.expand(None, n=4, start=5)           # 4 rows reusing positions [0, 5)
    >>> hidden = fwd.hidden_states(embeds[:, 5:].expand(4, -1, -1), **kwargs)   # only positions 5..8 run
    >>> hidden.shape, torch.allclose(hidden[0], full[0, 5:], atol=1e-5)
    (torch.Size([4, 4, 32]), True)
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor, nn
from transformers import DynamicCache

from genattrib.engine.forward import ModelForward

Pair = tuple[Tensor, Tensor]
PROBE_LENGTH, PROBE_SPLIT = 7, 3


def new_cache(pairs: list[Pair] | None = None) -> object:
    """An empty ``DynamicCache``, or one holding ``pairs`` (per layer ``(keys, values)``)."""
    return DynamicCache() if pairs is None else DynamicCache(pairs)


def cache_pairs(cache: object) -> list[Pair]:
    """Each layer's ``(keys, values)``, shaped ``[row, head, position, dim]``."""
    return [(item[0], item[1]) for item in cache]  # type: ignore[attr-defined]


def _plain_causal(model: nn.Module) -> bool:
    """Whether every layer attends causally to the whole prefix (no window, chunk, cross-attention)."""
    config = model.config
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    if getattr(cfg, "is_encoder_decoder", False) or getattr(cfg, "add_cross_attention", False):
        return False
    if any(kind != "full_attention" for kind in getattr(cfg, "layer_types", None) or []):
        return False
    if getattr(cfg, "attention_chunk_size", None):
        return False
    return not (getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True) is not False)


def _keyword(model: nn.Module, base: nn.Module) -> str | None:
    try:
        params = inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return None
    return next((name for name in ("cache", "past_key_values") if name in params), None)


def _probe(forward: ModelForward, keyword: str) -> bool:
    """A 7-token row run whole, then as 3 cached positions + the rest on 2 expanded rows: equal?"""
    ids = torch.arange(1, PROBE_LENGTH + 1) % max(2, forward.vocab_size)
    embeds = forward.embed(ids[None])
    with torch.no_grad():
        full = forward.base(inputs_embeds=embeds, use_cache=False)[0]
        cache = new_cache()
        forward.base(inputs_embeds=embeds[:, : PROBE_SPLIT + 1], use_cache=False, **{keyword: cache})
        pairs = cache_pairs(cache)
        if not pairs or any(k.shape[0] != 1 or k.shape[-2] != PROBE_SPLIT + 1 for k, _ in pairs):
            return False
        kv = PrefixKV.of(keyword, cache)
        suffix = embeds[:, PROBE_SPLIT:].expand(2, -1, -1)
        part = forward.base(inputs_embeds=suffix, use_cache=False, **kv.expand(None, 2, PROBE_SPLIT))[0]
    want = full[:, PROBE_SPLIT:].float().expand(2, -1, -1)
    tol = 1e-4 if forward.dtype == torch.float32 else 3e-2
    scale = float(want.abs().amax()) + 1.0
    return part.shape == want.shape and bool(((part.float() - want).abs() <= tol * scale).all())


def cache_keyword(forward: ModelForward) -> str | None:
    """The keyword the model takes its KV cache by, if reusing a clean prefix is exact for it
    (probed once per model wrapper: ``ModelForward(probed=)``); ``None``: run full rows."""
    if "cache_keyword" not in forward.capabilities:
        model = forward.model
        keyword = _keyword(model, forward.base) if _plain_causal(model) else None
        try:
            ok = keyword is not None and _probe(forward, keyword)
        except Exception:  # noqa: BLE001 - any failure of the cached path means: do not use it
            ok = False
        forward.capabilities["cache_keyword"] = keyword if ok else None
    keyword = forward.capabilities["cache_keyword"]
    return keyword if isinstance(keyword, str) else None


@dataclass
class PrefixKV:
    """The clean K/V of some rows (one ``(keys, values)`` pair per layer, ``[row, head, position, dim]``)."""

    keyword: str
    pairs: list[Pair]

    @classmethod
    def of(cls, keyword: str, cache: object) -> PrefixKV:
        """The K/V a model call recorded into ``cache`` (made by :func:`new_cache`)."""
        return cls(keyword, [(k.detach(), v.detach()) for k, v in cache_pairs(cache)])

    @classmethod
    def concat(cls, parts: list[PrefixKV]) -> PrefixKV:
        """The rows of several records, in order."""
        layers = zip(*(p.pairs for p in parts))
        pairs = [(torch.cat([k for k, _ in layer]), torch.cat([v for _, v in layer])) for layer in layers]
        return cls(parts[0].keyword, pairs)

    def expand(self, rows: Int[Tensor, " n"] | None, n: int, start: int) -> dict[str, object]:
        """Model keyword arguments for ``n`` rows whose positions ``[0, start)`` are the clean ones of
        ``rows`` (``None``: of the single recorded row); ``{}`` when ``start`` is 0."""
        if start == 0:
            return {}
        pairs = []
        for k, v in self.pairs:
            k, v = k[:, :, :start], v[:, :, :start]
            if rows is None:
                k, v = k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)
            else:
                k, v = k[rows.to(k.device)], v[rows.to(v.device)]
            pairs.append((k, v))
        return {self.keyword: new_cache(pairs)}
