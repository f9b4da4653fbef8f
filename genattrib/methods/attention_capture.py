"""Scoped access to attention probabilities.

Example:
    >>> with eager_attention(hf_model):                           # doctest: +SKIP
    ...     attentions = capture_attentions(forward, embeds)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from jaxtyping import Float
from torch import Tensor, nn

from genattrib.errors import UnsupportedModelError
from genattrib.methods.forward import ModelForward


@contextlib.contextmanager
def eager_attention(model: nn.Module) -> Iterator[None]:
    """Switch ``model`` to eager attention (which can return probabilities) for the block."""
    config = model.config
    previous = getattr(config, "_attn_implementation", None)
    if previous == "eager":
        yield
        return
    setter = getattr(model, "set_attn_implementation", None)
    try:
        if setter is not None:
            setter("eager")
        else:
            config._attn_implementation = "eager"
    except Exception as error:  # noqa: BLE001 - re-raised with advice
        raise UnsupportedModelError(
            f"{type(model).__name__} cannot switch to eager attention, so it cannot return attention "
            f"probabilities ({error}). Use a gradient or perturbation method instead."
        ) from error
    try:
        yield
    finally:
        if setter is not None:
            setter(previous)
        else:
            config._attn_implementation = previous


def capture_attentions(
    forward: ModelForward, embeds: Float[Tensor, "row position hidden"]
) -> Float[Tensor, "layer row head position position"]:
    """Attention probabilities of every layer for ``embeds`` (call inside :func:`eager_attention`)."""
    with torch.no_grad():
        out = forward.base(inputs_embeds=embeds.to(forward.input_device), use_cache=False, output_attentions=True)
    attentions = getattr(out, "attentions", None)
    if not attentions or any(a is None for a in attentions):
        raise UnsupportedModelError(
            f"{type(forward.model).__name__} did not return attention probabilities; "
            "attention methods need a model that supports output_attentions with eager attention. "
            "Use a gradient or perturbation method instead (e.g. method='saliency' or 'occlusion')."
        )
    return torch.stack([a.float().to(forward.input_device) for a in attentions])
