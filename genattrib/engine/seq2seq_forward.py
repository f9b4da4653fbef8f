"""Run an encoder-decoder (seq2seq) model on rows laid out like a decoder-only model's.

A row of an encoder-decoder sequence is ``source tokens + decoder start + target tokens``: the
first ``source_length`` positions go through the encoder, the rest through the decoder (with
cross-attention to the encoded source). The logits at row position ``p - 1`` predict the token
at ``p`` on the decoder side, exactly as in a causal LM, so every method, the planner and the
step scores run unchanged on :class:`EncoderDecoderForward`; a method's scores cover the source
and the target prefix together (``seq.source_scores`` / ``seq.target_scores`` split them).

The embeddings attributed are the outputs of each side's token-embedding module (what
``model.get_encoder().embed_tokens(ids)`` returns), so a family that scales embeddings after that
module (Marian) is run exactly as from token ids.

Example:
    >>> fwd = EncoderDecoderForward(t5_model)  # doctest: +SKIP
    >>> ids = torch.tensor([[5, 6, 7, 1, 0, 9]])  # 4 source tokens (</s> = 1), decoder start 0, one target
    >>> with fwd.encoding(4):  # doctest: +SKIP
    ...     logits = fwd.logits_at(fwd.embed(ids), torch.tensor([[5]]))  # predicts the token at 5 from <pad>
    >>> logits.shape  # doctest: +SKIP
    torch.Size([1, 1, 96])
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from genattrib.engine.forward import ModelForward
from genattrib.errors import UnsupportedModelError


def is_encoder_decoder(model: nn.Module) -> bool:
    """Whether ``model`` is an encoder-decoder (seq2seq) model, such as T5, BART or Marian."""
    return bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))


@contextlib.contextmanager
def _replaced_output(module: nn.Module, value: Tensor) -> Iterator[None]:
    """``module``'s next calls return ``value`` (the input ids only give the shape)."""
    handle = module.register_forward_hook(lambda _module, _args, _output: value)
    try:
        yield
    finally:
        handle.remove()


class EncoderDecoderBody(nn.Module):
    """``inputs_embeds`` (source then target prefix) → the decoder's last hidden states, at the
    row's positions (zeros at the source positions, which predict nothing).

    ``source_length`` is set per sequence by :meth:`EncoderDecoderForward.encoding`; calls made
    without it (the planner's timing probes) split a row in half.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "model", model)  # not a submodule: the wrapper owns no parameters
        self.source_length: int | None = None

    def split(self, length: int) -> int:
        """Where a row of ``length`` positions splits into encoder and decoder inputs."""
        if self.source_length is not None and self.source_length < length:
            return self.source_length
        return max(1, length // 2) if length > 1 else 0

    def run(self, inputs_embeds: Float[Tensor, "row position hidden"], **decoder_kwargs: object) -> tuple[int, Any]:
        """(the split, the decoder's output) for rows of at least 2 positions."""
        model = self.model
        rows, length, _ = inputs_embeds.shape
        s = self.split(length)
        encoder, decoder = model.get_encoder(), model.get_decoder()
        dummy = lambda n: torch.zeros(rows, n, dtype=torch.long, device=inputs_embeds.device)  # noqa: E731
        with _replaced_output(encoder.embed_tokens, inputs_embeds[:, :s]):
            encoded = encoder(input_ids=dummy(s), return_dict=True).last_hidden_state
        with _replaced_output(decoder.embed_tokens, inputs_embeds[:, s:]):
            out = decoder(
                input_ids=dummy(length - s),
                encoder_hidden_states=encoded,
                use_cache=False,
                return_dict=True,
                **decoder_kwargs,
            )
        return s, out

    def forward(
        self, inputs_embeds: Float[Tensor, "row position hidden"], use_cache: bool = False, **kwargs: object
    ) -> tuple[Float[Tensor, "row position hidden"]]:
        if kwargs:
            raise UnsupportedModelError(f"encoder-decoder rows take no extra model arguments ({sorted(kwargs)})")
        if inputs_embeds.shape[1] == 1:  # a 1-position row (a timing probe): that position goes through both sides
            return (self.run(inputs_embeds.repeat(1, 2, 1))[1].last_hidden_state,)
        s, out = self.run(inputs_embeds)
        decoded = out.last_hidden_state
        return (torch.cat([decoded.new_zeros(decoded.shape[0], s, decoded.shape[-1]), decoded], 1),)


@contextlib.contextmanager
def eager_attention(model: nn.Module) -> Iterator[None]:
    """The model computes attention eagerly in the block (SDPA cannot return the probabilities)."""
    previous = getattr(model.config, "_attn_implementation", None)
    switch = getattr(model, "set_attn_implementation", None)
    if previous in (None, "eager") or not callable(switch):
        yield
        return
    switch("eager")
    try:
        yield
    finally:
        switch(previous)


class EncoderDecoderForward(ModelForward):
    """:class:`~genattrib.engine.forward.ModelForward` for an encoder-decoder model (T5, BART,
    Marian, mT5, NLLB/M2M100): rows are ``source + target prefix``; set the source length of the
    sequence being attributed with :meth:`encoding`.

    Forward-mode passes and prefix KV caches are not used on these models (rows run whole).
    """

    def __init__(
        self, model: nn.Module, max_rows: int | None = None, probed: dict[object, object] | None = None
    ) -> None:
        super().__init__(model, max_rows, probed)
        self.capabilities.update(forward_mode=False, cache_keyword=None)  # neither path is written for two stacks
        self.encoder_embedding = model.get_encoder().embed_tokens
        self.decoder_embedding = model.get_decoder().embed_tokens
        self.output_scale = 1.0
        kept = self.capabilities.get("output_scale")  # calibrated once per loaded model (``probed``)
        self.output_scale = float(kept) if isinstance(kept, float) else self._calibrated_output_scale()
        self.capabilities["output_scale"] = self.output_scale

    def _calibrated_output_scale(self) -> float:
        """The factor on the decoder's output before the LM head: ``d_model ** -0.5`` for T5 with tied
        embeddings, else 1 (the families and versions differ, so it is checked against the model's own
        logits on a 2-token row)."""
        config = self.config
        d_model = getattr(config, "d_model", None) or self.hidden_size
        ids = torch.tensor([[int(getattr(config, "eos_token_id", None) or 1), int(config.decoder_start_token_id or 0)]])
        with torch.no_grad(), self.encoding(1):
            hidden = self.hidden_states(self.embed(ids))[:, 1:]
            want = self.model(
                input_ids=ids[:, :1].to(self.input_device), decoder_input_ids=ids[:, 1:].to(self.input_device)
            )
        want = want.logits.float()
        for scale in (1.0, float(d_model) ** -0.5):
            self.output_scale = scale
            got = self.head_logits(hidden).float().to(want.device)
            if torch.allclose(got, want, rtol=1e-3, atol=1e-4 * (1 + float(want.abs().max()))):
                return scale
        raise UnsupportedModelError(
            f"{type(self.model).__name__}: the logits could not be reproduced from its decoder's hidden states "
            "(an LM head genattrib does not know); encoder-decoder support covers T5, mT5, BART, Marian and M2M100/NLLB"
        )

    @staticmethod
    def body(model: nn.Module) -> nn.Module:
        return EncoderDecoderBody(model)

    @property
    def source_length(self) -> int | None:
        """Source positions of the rows run now (``None`` outside :meth:`encoding`)."""
        return self.base.source_length

    @contextlib.contextmanager
    def encoding(self, source_length: int) -> Iterator[None]:
        """Rows run inside the block start with ``source_length`` source (encoder) positions."""
        previous = self.base.source_length
        self.base.source_length = int(source_length)
        try:
            yield
        finally:
            self.base.source_length = previous

    def embed(self, ids: Int[Tensor, "row position"]) -> Float[Tensor, "row position hidden"]:
        """Each side's token embeddings (the encoder's for the source, the decoder's for the rest)."""
        s = self.base.split(int(ids.shape[1]))
        ids = ids.to(self.input_device)
        with torch.no_grad():
            source = self.encoder_embedding(ids[:, :s])
            target = self.decoder_embedding(ids[:, s:])
        return torch.cat([source, target.to(source.device)], 1).detach()

    def head_logits(self, hidden: Float[Tensor, "... hidden"]) -> Float[Tensor, "... vocab"]:
        """The LM head as the model applies it: T5's output scaling, BART's/Marian's ``final_logits_bias``."""
        hidden = hidden.to(self.head_device)
        if self.output_scale != 1.0:
            hidden = hidden * self.output_scale
        logits = self.head(hidden)
        bias = getattr(self.model, "final_logits_bias", None)
        if isinstance(bias, Tensor):
            logits = logits + bias.to(logits.device)
        return logits

    def gradients_reach_inputs(self) -> bool:
        """Whether autograd links the logits to the input embeddings (one source and one target token)."""
        with self.encoding(1):
            leaf = self.embed(torch.zeros(1, 2, dtype=torch.long)).float().to(self.dtype).requires_grad_(True)
            with torch.enable_grad():
                logits = self.logits_at(leaf, torch.full((1, 1), 2, dtype=torch.long))
                if not logits.requires_grad:
                    return False
                (grad,) = torch.autograd.grad(logits.sum(), leaf, allow_unused=True)
        return grad is not None

    def attention_maps(
        self, embeds: Float[Tensor, "row position hidden"]
    ) -> tuple[Float[Tensor, "layer row head query source"], Float[Tensor, "layer row head query query"]]:
        """Each decoder layer's cross-attention (decoder queries over the source) and self-attention
        (decoder queries over the target prefix) probabilities for rows in the current :meth:`encoding`."""
        with eager_attention(self.model), torch.no_grad():
            _, out = self.base.run(embeds.to(self.input_device), output_attentions=True)
        cross, own = out.cross_attentions, out.attentions
        if not cross or not own or any(a is None for a in (*cross, *own)):
            raise UnsupportedModelError(f"{type(self.model).__name__} returned no attention probabilities")
        return torch.stack([a.float() for a in cross]), torch.stack([a.float() for a in own])

    def encoder_attention_maps(
        self, embeds: Float[Tensor, "row position hidden"]
    ) -> Float[Tensor, "layer row head source source"]:
        """Each encoder layer's self-attention probabilities over the source of rows in the current
        :meth:`encoding` (the encoder alone runs)."""
        rows, length, _ = embeds.shape
        s = self.base.split(int(length))
        encoder = self.model.get_encoder()
        ids = torch.zeros(rows, s, dtype=torch.long, device=self.input_device)
        with eager_attention(self.model), torch.no_grad():
            with _replaced_output(encoder.embed_tokens, embeds[:, :s].to(self.input_device)):
                maps = encoder(input_ids=ids, output_attentions=True, return_dict=True).attentions
        if not maps or any(a is None for a in maps):
            raise UnsupportedModelError(f"{type(self.model).__name__} returned no encoder attention probabilities")
        return torch.stack([a.float() for a in maps])
