"""Scoped capture and injection of attention probabilities through the transformers registry.

Models that dispatch attention through ``transformers.AttentionInterface`` (Llama, Mistral,
Qwen2, Gemma, GPT-2 ... in recent transformers) call whatever function is registered under
``config._attn_implementation``. :func:`attention_probe` registers a probe function under a
fresh name (and the eager mask builder under the same name in ``AttentionMaskInterface``),
points every config of the model at it for the block, and restores the configs and both
registries afterwards, even when the block raises. No module is patched, no hook is added, the
model keeps its own implementation (eager, SDPA ...) outside the block.

The probe computes attention eagerly (fp32 softmax) and, per layer, stores the probabilities
(:attr:`AttentionProbe.capture`) or replaces them by a given tensor (:attr:`AttentionProbe.inject`,
no re-softmax, no re-mask, no dropout) through which autograd flows.

Example:
    >>> input_ids = out.sequences[0].input_ids[None, :5]
    >>> probe = AttentionProbe(capture={0, 1})
    >>> with attention_probe(hf_model, probe):
    ...     logits = hf_model(input_ids).logits
    >>> probe.probs[1].shape                                       # (batch, head, query, key)
    torch.Size([1, 4, 5, 5])
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn

from genattrib.engine.forward import ModelForward
from genattrib.engine.model_hooks import ModelHook, hooked
from genattrib.errors import UnsupportedModelError
from genattrib.validation import is_int

_MISSING = object()


@dataclass
class AttentionProbe:
    """What the probe attention function does, layer by layer, during one context.

    ``capture``: layers whose probabilities (detached, fp32) and allowed-key masks are stored in
    ``probs``/``allowed`` (``None``: no layer, ``"all"``: every layer), or, with ``consume``, handed
    to ``consume(layer, probs)`` as each layer computes them and not kept. ``inject``: layer -> a
    tensor ``[batch, head, query, key]`` that replaces that layer's probabilities."""

    capture: set[int] | str | None = None
    inject: dict[int, Tensor] = field(default_factory=dict)
    consume: Callable[[int, Tensor], None] | None = None
    probs: dict[int, Tensor] = field(default_factory=dict)
    allowed: dict[int, Tensor] = field(default_factory=dict)
    calls: int = 0
    layer_of: dict[int, int] = field(default_factory=dict)

    def layer_index(self, module: nn.Module) -> int:
        index = getattr(module, "layer_idx", None)
        if is_int(index):
            return index
        return self.layer_of.setdefault(id(module), len(self.layer_of))

    def wants(self, layer: int) -> bool:
        return self.capture == "all" or (isinstance(self.capture, set) and layer in self.capture)


def _repeat_kv(states: Tensor, heads: int) -> Tensor:
    groups = heads // states.shape[1]
    return states if groups == 1 else states.repeat_interleave(groups, dim=1)


def _allowed_mask(module: nn.Module, mask: Any, tq: int, tk: int, device: torch.device) -> Tensor:
    """Boolean ``[batch|1, 1|head, tq, tk]`` of the keys each query may attend to."""
    if isinstance(mask, Tensor):
        mask = mask[..., :tk]
        if mask.dtype == torch.bool:
            return mask
        return mask > torch.finfo(mask.dtype).min / 2
    allowed = torch.ones(1, 1, tq, tk, dtype=torch.bool, device=device)
    if tq > 1 and getattr(module, "is_causal", True) and not getattr(module, "is_cross_attention", False):
        allowed = torch.ones(tq, tk, dtype=torch.bool, device=device).tril(tk - tq).view(1, 1, tq, tk)
    return allowed


def _scaling(module: nn.Module, scaling: float | None, head_dim: int) -> float:
    if scaling is not None:
        return float(scaling)
    scale = head_dim**-0.5 if getattr(module, "scale_attn_weights", True) else 1.0
    if getattr(module, "scale_attn_by_inverse_layer_idx", False):  # GPT-2 in transformers 4.x
        scale /= float(getattr(module, "layer_idx", 0) + 1)
    return scale


def probe_attention_forward(
    probe: AttentionProbe,
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Any,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[Tensor, Tensor]:
    """Eager attention that records or replaces the probabilities (the registered function)."""
    if kwargs.get("s_aux") is not None or getattr(module, "sinks", None) is not None:
        raise UnsupportedModelError(
            f"attention sinks ({type(module).__name__}) are not supported by genattrib's attention probe; "
            "use a gradient or perturbation method instead (e.g. method='saliency' or 'occlusion')"
        )
    probe.calls += 1
    layer = probe.layer_index(module)
    heads, tq, tk = query.shape[1], query.shape[2], key.shape[2]
    key, value = _repeat_kv(key, heads), _repeat_kv(value, heads)
    allowed = _allowed_mask(module, attention_mask, tq, tk, query.device)
    if layer in probe.inject:
        probs = probe.inject[layer].to(device=value.device, dtype=value.dtype)  # the layer's own device (sharded)
    else:
        scores = torch.matmul(query.float(), key.float().transpose(-1, -2)) * _scaling(module, scaling, query.shape[-1])
        softcap = kwargs.get("softcap")
        if softcap:
            scores = torch.tanh(scores / softcap) * softcap
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        probs = torch.softmax(scores, dim=-1)
        if probe.wants(layer) and probe.consume is not None:
            probe.consume(layer, probs.detach())
        elif probe.wants(layer):
            probe.probs[layer] = probs.detach()
            probe.allowed[layer] = allowed.expand(probs.shape).detach()
        probs = probs.to(value.dtype)
        if dropout and module.training:
            probs = nn.functional.dropout(probs, p=dropout, training=True)
        head_mask = kwargs.get("head_mask")
        if head_mask is not None:
            probs = probs * head_mask
    output = torch.matmul(probs, value).transpose(1, 2).contiguous()
    return output, probs


def _configs(model: nn.Module) -> list[Any]:
    """Every config object the model's modules read (the model's, sub-configs, submodules')."""
    found: dict[int, Any] = {}

    def add(config: Any) -> None:
        if config is None or id(config) in found or not hasattr(config, "_attn_implementation_internal"):
            return
        found[id(config)] = config
        for name in getattr(config, "sub_configs", {}) or {}:
            add(getattr(config, name, None))

    add(getattr(model, "config", None))
    for module in model.modules():
        add(getattr(module, "config", None))
    return list(found.values())


@dataclass(frozen=True)
class AttentionRouting(ModelHook):
    """The model hook behind :func:`attention_probe`: every config of the model points at a probe
    function registered under a fresh name (with the eager mask builder) for the block."""

    probe: AttentionProbe

    def attach(self, model: nn.Module, stack: contextlib.ExitStack) -> None:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, eager_mask

        name = f"genattrib_probe_{uuid.uuid4().hex}"
        probe = self.probe

        def function(module: nn.Module, query: Tensor, key: Tensor, value: Tensor, attention_mask: Any, **kwargs: Any):
            return probe_attention_forward(probe, module, query, key, value, attention_mask, **kwargs)

        configs = _configs(model)
        saved = [(c, c.__dict__.get("_attn_implementation_internal", _MISSING)) for c in configs]

        def unregister() -> None:
            AttentionInterface._global_mapping.pop(name, None)
            AttentionMaskInterface._global_mapping.pop(name, None)

        def restore() -> None:
            for config, previous in saved:
                if previous is _MISSING:
                    config.__dict__.pop("_attn_implementation_internal", None)
                else:
                    config.__dict__["_attn_implementation_internal"] = previous

        stack.callback(unregister)  # runs last: the configs no longer name it
        AttentionInterface._global_mapping[name] = function
        AttentionMaskInterface._global_mapping[name] = eager_mask
        stack.callback(restore)
        for config in configs:
            config.__dict__["_attn_implementation_internal"] = name


@contextlib.contextmanager
def attention_probe(model: nn.Module, probe: AttentionProbe) -> Iterator[AttentionProbe]:
    """Route ``model``'s attention through ``probe`` for the block; everything is restored after
    (the :class:`AttentionRouting` model hook, entered with :func:`~genattrib.engine.model_hooks.hooked`)."""
    with hooked(model, AttentionRouting(probe)):
        yield probe


def num_layers(model: nn.Module) -> int | None:
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    return int(layers) if layers else None


def unsupported_error(model: nn.Module, why: str) -> UnsupportedModelError:
    return UnsupportedModelError(
        f"{type(model).__name__} {why}, so attention methods (attention, rollout, rpi) cannot read or replace its "
        "attention probabilities: they need a model whose attention goes through transformers' attention-function "
        "registry (Llama, Mistral, Qwen2, Gemma, GPT-2 ... in recent transformers). Use a gradient or perturbation "
        "method instead (e.g. method='saliency', 'integrated_gradients' or 'occlusion')"
    )


def check_attention_support(forward: ModelForward) -> None:
    """Raise :class:`UnsupportedModelError` unless a 2-token forward calls the probe once per layer."""
    probe = AttentionProbe()
    with attention_probe(forward.model, probe), torch.no_grad():
        forward.hidden_states(forward.embed(torch.zeros(1, 2, dtype=torch.long)))
    expected = num_layers(forward.model)
    if probe.calls == 0:
        raise unsupported_error(forward.model, "does not compute attention through the attention registry")
    if expected is not None and probe.calls < expected:
        raise unsupported_error(
            forward.model,
            f"computed only {probe.calls} of its {expected} attention layers through the attention registry",
        )


def stream_attentions(
    forward: ModelForward,
    embeds: Float[Tensor, "row position hidden"],
    consume: Callable[[slice, int, Float[Tensor, "chunk head position position"]], None],
) -> None:
    """Run ``embeds`` through the model and hand every layer's attention probabilities (fp32,
    detached) to ``consume(rows, layer, probs)`` as that layer computes them, layer by layer in
    forward order: only one layer's probabilities exist at a time. Rows run in chunks through
    :meth:`ModelForward.run_chunked` (sized to the memory budget, halved when a chunk runs out of
    memory, counted in the forward's ``rows_run``); a retried chunk is handed over again from its
    first layer.

    Example:
        >>> forward, shapes = ModelForward(hf_model), []
        >>> embeds = forward.embed(out.sequences[0].input_ids[None])       # 1 row of 9 tokens
        >>> stream_attentions(forward, embeds, lambda rows, layer, p: shapes.append(p.shape))
        >>> len(shapes), shapes[0]                                    # every layer: (row, head, query, key)
        (2, torch.Size([1, 4, 9, 9]))
    """

    def run(rows: slice) -> None:
        probe = AttentionProbe(capture="all", consume=lambda layer, probs: consume(rows, layer, probs))
        with attention_probe(forward.model, probe):
            forward.hidden_states(embeds[rows])
        if probe.calls == 0:
            raise unsupported_error(forward.model, "does not compute attention through the attention registry")

    forward.run_chunked(int(embeds.shape[0]), int(embeds.shape[1]), run, grad=False, n_logits=0)


def capture_attentions(
    forward: ModelForward, embeds: Float[Tensor, "row position hidden"]
) -> Float[Tensor, "layer row head position position"]:
    """Attention probabilities of every layer for ``embeds`` (fp32, on the input device), written
    into one tensor as each layer computes them (no second copy of every layer)."""
    seen: set[int] = set()
    out: Tensor | None = None

    def keep(rows: slice, layer: int, probs: Tensor) -> None:
        nonlocal out
        if out is None or layer >= out.shape[0]:  # sized from the config; grown if the model has more
            size = max(layer + 1, num_layers(forward.model) or 1)
            shape = (size, int(embeds.shape[0]), *probs.shape[1:])
            grown = torch.empty(shape, dtype=torch.float32, device=forward.input_device)
            if out is not None:
                grown[: out.shape[0]] = out
            out = grown
        seen.add(layer)
        out[layer, rows] = probs.float().to(out.device)

    stream_attentions(forward, embeds, keep)
    assert out is not None
    layers = sorted(seen)
    return out[: len(layers)] if layers == list(range(len(layers))) else out[layers]


def capture_layer(
    forward: ModelForward, embeds: Float[Tensor, "row position hidden"], layer: int
) -> tuple[Float[Tensor, "row head position position"], Bool[Tensor, "row head position position"]]:
    """Probabilities and allowed-key mask of one layer for ``embeds``."""
    probe = AttentionProbe(capture={layer})
    with attention_probe(forward.model, probe), torch.no_grad():
        forward.hidden_states(embeds)
    if layer not in probe.probs:
        raise unsupported_error(
            forward.model, f"did not compute layer {layer}'s attention through the attention registry"
        )
    return probe.probs[layer].float(), probe.allowed[layer]
