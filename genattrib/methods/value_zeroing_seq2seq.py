"""Value zeroing on an encoder-decoder model (T5, BART, Marian, mT5, M2M100/NLLB), as Inseq defines it:
the source side from the decoder's cross-attention, the target prefix from its self-attention.

For every decoder block ``l`` and every row position ``j``: a source position's value vector is
zeroed in block ``l``'s cross-attention (``encoder_attn.v_proj``, T5's ``EncDecAttention.v``), a
target position's in its self-attention (``self_attn.v_proj``, T5's ``SelfAttention.v``; T5's
relative position bias acts on the attention scores, not on the values, so it is untouched); the
block runs on its clean input and each decoder query ``i`` is scored by the dissimilarity of its
clean and zeroed outputs (the last block's after the decoder's final norm). The encoder always
runs clean. Batched as for decoder-only models: one row per zeroed position, every block zeroing
at once with each block's output replaced by its clean output.

Example:
    >>> d = decoder_distances(forward.embed(ids)[0], forward, "cosine")  # doctest: +SKIP
    >>> d.shape  # [decoder block, row position j, decoder query i]  # doctest: +SKIP
    torch.Size([2, 14, 5])
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor, nn

from genattrib.engine.model_hooks import Hook, ModuleRule, ReplaceOutput, hooked
from genattrib.engine.seq2seq_forward import EncoderDecoderForward
from genattrib.errors import UnsupportedModelError
from genattrib.methods.layer_forward import AtModule, side_stack

SELF_VALUES = ("self_attn.v_proj", "SelfAttention.v")  # BART/Marian/M2M100, T5/mT5
CROSS_VALUES = ("encoder_attn.v_proj", "EncDecAttention.v")


@dataclass(frozen=True)
class DecoderValues:
    """Per decoder block: its module name, its self-attention's and its cross-attention's value projection."""

    blocks: list[str]
    own: list[str]
    cross: list[str]


def decoder_values(model: nn.Module) -> DecoderValues:
    """The decoder's blocks and their value projections, or an error naming the family."""
    decoder = model.get_decoder()
    root = next(n for n, m in model.named_modules() if m is decoder)
    stack_name, stack = side_stack(decoder)
    found = DecoderValues([], [], [])
    for index, block in enumerate(stack):
        prefix = f"{root}.{stack_name}.{index}"
        names = [n for n, _ in block.named_modules()]
        own = [n for n in names if n.endswith(SELF_VALUES)]
        cross = [n for n in names if n.endswith(CROSS_VALUES)]
        if len(own) != 1 or len(cross) != 1:
            raise UnsupportedModelError(
                f"value_zeroing finds no self- and cross-attention value projections ({'/'.join(SELF_VALUES)}, "
                f"{'/'.join(CROSS_VALUES)}) in decoder block {index} of {type(model).__name__}; it runs on T5, mT5, "
                "BART, Marian and M2M100/NLLB: use attention or occlusion on this model"
            )
        found.blocks.append(prefix)
        found.own.append(f"{prefix}.{own[0]}")
        found.cross.append(f"{prefix}.{cross[0]}")
    return found


@dataclass(frozen=True)
class _ZeroValuesAt(ModuleRule):
    """Zeroes, in row ``r``, the value vector at ``positions[r]`` of this module's output (none where
    that is outside its positions: a source position in the self-attention, and so on)."""

    positions: Tensor

    def attach(self, name: str, module: nn.Module, stack: contextlib.ExitStack) -> None:
        def zero(_module: nn.Module, out: Tensor) -> Tensor:
            where = self.positions.to(out.device)
            rows = torch.nonzero((where >= 0) & (where < out.shape[1])).flatten()
            keep = torch.ones(out.shape[:2], dtype=out.dtype, device=out.device)
            keep[rows, where[rows]] = 0
            return out * keep.unsqueeze(-1)

        ReplaceOutput(zero).attach(name, module, stack)


def output_distance(clean: Tensor, zeroed: Tensor, metric: str) -> Float[Tensor, "row position"]:
    """Distance of each zeroed output from the clean one (``cosine``: 1 - cos, in float64; or euclidean)."""
    clean, zeroed = clean.double().to(zeroed.device), zeroed.double()  # 1 - cos cancels: float64
    if metric == "cosine":
        return (1 - torch.nn.functional.cosine_similarity(clean, zeroed, dim=-1)).float()
    return (clean - zeroed).norm(dim=-1).float()


def decoder_distances(
    x: Float[Tensor, "position hidden"], forward: EncoderDecoderForward, metric: str
) -> Float[Tensor, "layer position query"]:
    """``d[l, j, i]``: dissimilarity of decoder query ``i``'s output of decoder block ``l`` with the
    value of row position ``j`` zeroed there (cross-attention for a source ``j``, self-attention for a
    target ``j``; 0 where a target ``j`` comes after ``i``). Runs inside ``forward.encoding(s)``."""
    model, values = forward.model, decoder_values(forward.model)
    length, count = int(x.shape[0]), len(values.blocks)
    source = forward.base.split(length)
    clean: dict[str, Tensor] = {}
    final = torch.empty(0)

    def grab(name: str) -> Hook:
        return AtModule(name, ReplaceOutput(lambda _m, out: clean.__setitem__(name, out.detach()) or out))

    def run_clean(_chunk: slice) -> None:
        nonlocal final
        with hooked(model, *map(grab, values.blocks)):
            final = forward.hidden_states(x.unsqueeze(0)).detach()[:, source:]

    forward.run_chunked(1, length, run_clean, grad=False)
    dist = torch.zeros(count, length, length - source)

    def run(chunk: slice) -> None:
        positions = torch.arange(chunk.start, chunk.stop)
        rows = chunk.stop - chunk.start
        hooks: list[Hook] = [AtModule(name, _ZeroValuesAt(positions)) for name in values.cross]
        hooks += [AtModule(name, _ZeroValuesAt(positions - source)) for name in values.own]

        def patch(index: int) -> Hook:
            block = values.blocks[index]

            def swap(_m: nn.Module, out: Tensor) -> Tensor:
                dist[index, chunk] = output_distance(clean[block].expand(rows, -1, -1), out, metric).cpu()
                return clean[block].to(out.device, out.dtype).expand(rows, -1, -1)

            return AtModule(block, ReplaceOutput(swap))

        hooks += [patch(i) for i in range(count - 1)]
        with hooked(model, *hooks):
            out = forward.hidden_states(x.unsqueeze(0).expand(rows, -1, -1))[:, source:]
        dist[count - 1, chunk] = output_distance(final.expand(rows, -1, -1), out.detach(), metric).cpu()

    forward.run_chunked(length, length, run, grad=False)
    j, i = torch.arange(length).unsqueeze(1), torch.arange(length - source).unsqueeze(0)
    return dist * ((j < source) | (j - source <= i))  # a target position reaches only the queries after it
