"""A layer of the model for layer attribution: which module ``layer=`` names, its output read
or replaced through the model hook, and the gradient of a target at that output.

``layer`` is ``None`` or ``"embeddings"`` (the input embedding layer, the default: baselines
are then token ids, as for the input methods), an index into the decoder's block stack
(``-1``: the last block) or a module name of the model (``"model.layers.3.mlp"``). A block's
output is its hidden states; replacing it (``replaced``) runs the rest of the model from a
given tensor, the blocks before it still running on the inputs (as Captum's layer methods do).

On an encoder-decoder model a bare index is ambiguous and refused: ``"encoder.3"`` /
``"decoder.-1"`` name a block of one stack, or pass a module name; the layer's :attr:`Layer.side`
says which positions of a row (source or target) its output covers (:func:`on_row_positions`).

Example:
    >>> layer = resolve_layer(hf_model, 1)
    >>> layer.name, layer.is_embedding
    ('model.layers.1', False)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor, nn

from genattrib.engine.explained import Explained
from genattrib.engine.forward import ModelForward, no_gradient_error
from genattrib.engine.model_hooks import Hook, ModelHook, ModuleRule, ReplaceOutput, hooked
from genattrib.engine.seq2seq_forward import is_encoder_decoder
from genattrib.errors import InvalidArgumentError, UnsupportedModelError
from genattrib.targets import TargetFunction

EMBEDDINGS = "embeddings"
LayerTensor = Float[Tensor, "row side layer_hidden"]  # a layer's output or the gradient at it (side: its positions)
SOURCE, TARGET = "source", "target"  # the side of an encoder-decoder row a layer's output covers
CROSS_KEYS_VALUES = ("encoder_attn.k_proj", "encoder_attn.v_proj", "EncDecAttention.k", "EncDecAttention.v")


def block_stack(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The decoder's block stack (``model.layers``, ``transformer.h`` ...): the longest
    ``ModuleList`` of the model whose name has no more dots than needed."""
    lists = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    if not lists:
        raise InvalidArgumentError("layer", f"{type(model).__name__} has no block stack", "pass a module name")
    return max(lists, key=lambda item: (len(item[1]), -item[0].count(".")))


@dataclass(frozen=True)
class Layer:
    """The module ``layer=`` names (``name`` in ``model.named_modules()``)."""

    name: str
    module: nn.Module
    is_embedding: bool
    side: str | None = None  # encoder-decoder models: SOURCE (an encoder layer) or TARGET (a decoder layer)


def resolve_layer(model: nn.Module, layer: int | str | None) -> Layer:
    """The layer ``layer`` names, or an error naming ``layer`` (before any model call)."""
    embedding = model.get_input_embeddings()
    modules = dict(model.named_modules())
    embedding_name = next(n for n, m in modules.items() if m is embedding)
    if layer is None or layer == EMBEDDINGS:
        return Layer(embedding_name, embedding, True)
    if isinstance(layer, bool) or not isinstance(layer, (int, str)):
        raise InvalidArgumentError("layer", f"cannot use {type(layer).__name__}", "pass a block index or module name")
    if is_encoder_decoder(model):
        return _seq2seq_layer(model, layer, modules, embedding)
    if isinstance(layer, int):
        stack_name, stack = block_stack(model)
        if not -len(stack) <= layer < len(stack):
            raise InvalidArgumentError(
                "layer",
                f"block index {layer} is out of range: the model has {len(stack)} blocks",
                f"pass an index in [-{len(stack)}, {len(stack) - 1}] or a module name",
            )
        index = layer % len(stack)
        return Layer(f"{stack_name}.{index}", stack[index], False)
    if layer not in modules:
        raise _unknown_module(layer, modules, "a name from model.named_modules()", "a block index")
    return Layer(layer, modules[layer], modules[layer] is embedding)


def _unknown_module(layer: str, modules: dict[str, nn.Module], first: str, last: str) -> InvalidArgumentError:
    """The error for a ``layer=`` name the model lacks, suggesting up to 5 names that contain it."""
    close = [n for n in modules if n.endswith(layer) or layer in n][:5]
    return InvalidArgumentError(
        "layer",
        f"the model has no module named {layer!r}",
        f"pass {first} (e.g. {', '.join(close or list(modules)[1:4])}), {last} or {EMBEDDINGS!r}",
    )


def side_stack(side: nn.Module) -> tuple[str, nn.ModuleList]:
    """The block stack of an encoder or a decoder: its own ``ModuleList`` child (T5's ``block``,
    BART's ``layers``), not a longer list inside a block (a T5 decoder block's 3 sublayers)."""
    lists = [(name, m) for name, m in side.named_children() if isinstance(m, nn.ModuleList) and len(m) > 0]
    return max(lists, key=lambda item: len(item[1])) if lists else block_stack(side)


def _seq2seq_layer(model: nn.Module, layer: int | str, modules: dict[str, nn.Module], embedding: nn.Module) -> Layer:
    """``layer`` on an encoder-decoder model: ``"encoder.<i>"``/``"decoder.<i>"`` (a block of that
    stack) or a module inside the encoder or the decoder; a bare index is refused (which stack?)."""
    sides = {SOURCE: model.get_encoder(), TARGET: model.get_decoder()}
    roots = {side: next(n for n, m in modules.items() if m is module) for side, module in sides.items()}
    example = "'encoder.0', 'decoder.-1'"
    if isinstance(layer, int):
        raise InvalidArgumentError(
            "layer",
            f"block index {layer} is ambiguous on an encoder-decoder model (it has an encoder and a decoder stack)",
            f"name the stack: 'encoder.{layer}' or 'decoder.{layer}' (or a module name)",
        )
    stack_side, _, index = layer.partition(".")
    if stack_side in ("encoder", "decoder") and index.lstrip("-").isdigit():
        side = SOURCE if stack_side == "encoder" else TARGET
        stack_name, stack = side_stack(sides[side])
        i = int(index)
        if not -len(stack) <= i < len(stack):
            raise InvalidArgumentError(
                "layer",
                f"block index {i} is out of range: the {stack_side} has {len(stack)} blocks",
                f"pass '{stack_side}.<i>' with i in [-{len(stack)}, {len(stack) - 1}]",
            )
        name = f"{roots[side]}.{stack_name}.{i % len(stack)}"
        return Layer(name, modules[name], False, side)
    if layer not in modules:
        raise _unknown_module(layer, modules, "a name from model.named_modules()", example)
    module = modules[layer]
    if module is embedding:
        return Layer(layer, module, True)
    if module in (sides[SOURCE].embed_tokens, sides[TARGET].embed_tokens):
        raise InvalidArgumentError(
            "layer",
            f"{layer!r} is one side's token embedding, which genattrib sets itself",
            f"pass {EMBEDDINGS!r} (both sides' token embeddings, the default)",
        )
    side = next((s for s, root in roots.items() if layer.startswith(root + ".")), None)
    if side is None:
        raise InvalidArgumentError(
            "layer",
            f"{layer!r} is in neither the encoder ({roots[SOURCE]!r}) nor the decoder ({roots[TARGET]!r})",
            f"pass {example} or a module inside one of them",
        )
    if layer.endswith(CROSS_KEYS_VALUES):
        raise InvalidArgumentError(
            "layer",
            f"{layer!r} projects the encoder's states for the cross-attention: its positions are the source's, "
            "its gradient comes from the decoder",
            "pass the cross-attention module itself (one output per target position) or a block",
        )
    return Layer(layer, module, False, side)


def on_row_positions(
    forward: ModelForward, layer: Layer, scores: Float[Tensor, "row side ..."], length: int
) -> Float[Tensor, "row position ..."]:
    """A layer's per-position tensor on the rows' ``length`` positions: an encoder layer's output
    covers the source positions, a decoder layer's the target side (zeros on the other side,
    which the pipeline marks NaN: that side is not scored)."""
    if layer.side is None:
        return scores
    source = int(forward.source_length or 0)
    want = source if layer.side == SOURCE else length - source
    if scores.shape[1] != want:
        raise UnsupportedModelError(
            f"layer {layer.name!r}: its output has {scores.shape[1]} positions, not the {want} of the "
            f"{layer.side} side it belongs to (a cross-attention projection?); pass a block or a module whose "
            "output has one vector per position of its side"
        )
    pad = scores.new_zeros(scores.shape[0], length - want, *scores.shape[2:])
    return torch.cat([scores, pad] if layer.side == SOURCE else [pad, scores], 1)


#: The methods whose ``layer=`` is resolved here (another method's ``layer``, RPI's, means something else).
LAYER_METHODS = ("layer_integrated_gradients", "layer_gradient_x_activation", "layer_deeplift")


def scored_side(method: str, params: object, model: nn.Module) -> str | None:
    """The side of an encoder-decoder row that ``method`` scores with ``params`` (``None``: both,
    e.g. at the embeddings, or not a layer method)."""
    layer = getattr(params, "layer", None)
    return None if layer is None or method not in LAYER_METHODS else resolve_layer(model, layer).side


@dataclass(frozen=True)
class AtModule(ModelHook):
    """One rule on one named module (a family map reaches every module of a class)."""

    name: str
    rule: ModuleRule

    def attach(self, model: nn.Module, stack: contextlib.ExitStack) -> None:
        self.rule.attach(self.name, model.get_submodule(self.name), stack)


@dataclass
class LeafOutput:
    """Replaces a layer's output by ``value`` (or, with ``None``, by a detached copy of itself),
    made a leaf that requires gradients when autograd is on; the leaf is kept in :attr:`leaf`."""

    value: Tensor | None = None
    leaf: Tensor | None = field(default=None, init=False)

    def __call__(self, _module: nn.Module, output: Tensor) -> Tensor:
        source = output if self.value is None else self.value.to(device=output.device, dtype=output.dtype)
        self.leaf = source.detach().clone().requires_grad_(torch.is_grad_enabled())
        return self.leaf


def value_and_layer_grad(
    forward: ModelForward,
    layer: Layer,
    embeds: Float[Tensor, "row position hidden"],
    point: LayerTensor | None,
    targets: Explained,
    attributed_fn: TargetFunction,
    hooks: tuple[Hook, ...] = (),
) -> tuple[Float[Tensor, " row"], LayerTensor, LayerTensor]:
    """``F`` of each row (one unit per row, ``targets`` shaped ``[row, m]``) with the layer's output
    set to ``point`` (``None``: left as computed from ``embeds``), its float32 gradient at that
    output, and the output itself (on an encoder-decoder model, an encoder layer's output covers
    the source positions only, a decoder layer's the target side only). ``hooks`` run too (DeepLIFT's rules)."""
    one_unit = targets.map(lambda t: t.unsqueeze(1))
    with torch.enable_grad():
        if layer.is_embedding:
            leaf = (embeds if point is None else point).detach().clone().requires_grad_(True)
            with hooked(forward.model, *hooks):
                value = forward.unit_values(leaf, one_unit, attributed_fn)[:, 0]
        else:
            grab = LeafOutput(point)
            with hooked(forward.model, *hooks, AtModule(layer.name, ReplaceOutput(grab))):
                value = forward.unit_values(embeds, one_unit, attributed_fn)[:, 0]
            leaf = grab.leaf
        if leaf is None or not value.requires_grad:
            raise no_gradient_error(type(forward.model).__name__)
        (grad,) = torch.autograd.grad(value.sum(), leaf)
    return value.detach().float(), grad.float(), leaf.detach()


def layer_grads_by_chunk(
    forward: ModelForward,
    layer: Layer,
    count: int,
    length: int,
    inputs: Callable[[slice], Tensor],
    points: Callable[[slice], Tensor | None],
    targets: Explained,
    attributed_fn: TargetFunction,
    consume: Callable[[slice, Tensor, Tensor, Tensor], None],
    hooks: Callable[[slice, Tensor], tuple[Hook, ...]] = lambda chunk, embeds: (),
) -> None:
    """:func:`value_and_layer_grad` over ``count`` rows in chunks (:meth:`ModelForward.run_chunked`,
    forward+backward rows): row ``i`` runs on ``inputs`` with the layer's output at ``points`` (or
    as computed), and ``consume(chunk, values, grads, outputs)`` takes each chunk's results.
    ``targets`` has one unit per row."""

    def run(chunk: slice) -> None:
        embeds = inputs(chunk)
        value, grad, out = value_and_layer_grad(
            forward, layer, embeds, points(chunk), targets.select(chunk), attributed_fn, hooks(chunk, embeds)
        )
        consume(chunk, value, grad, out)

    forward.run_chunked(count, length, run, grad=True, n_logits=targets.slots)


def check_layer_param(layer: object) -> None:
    """The type of ``layer`` (whether it exists is checked against the model, in ``check_model``)."""
    if layer is not None and (isinstance(layer, bool) or not isinstance(layer, (int, str)) or layer == ""):
        raise InvalidArgumentError(
            "layer", f"cannot use {layer!r}", f"pass a block index, a module name or {EMBEDDINGS!r}"
        )
