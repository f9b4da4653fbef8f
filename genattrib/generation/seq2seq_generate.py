"""Generate with an encoder-decoder model: Hugging Face ``generate`` runs the encoder once per batch
of sources and reuses its outputs (and the decoder's KV cache) at every step.

A trace's prompt is ``source ids + [decoder start]`` and its generated ids the target tokens, so the
engine reads it as it reads a decoder-only trace (see :mod:`genattrib.engine.seq2seq_forward`).

Example:
    >>> config = GenerationConfig(max_new_tokens=3)
    >>> traces = generate_seq2seq_traces(t5_model, [torch.tensor([5, 6, 1, 0])], config)  # doctest: +SKIP
    >>> traces[0].prompt_ids.tolist(), traces[0].generated_ids.shape   # doctest: +SKIP
    ([5, 6, 1, 0], torch.Size([3]))
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Int
from torch import Tensor, nn
from transformers import GenerationConfig

from genattrib.devices import execution_device
from genattrib.generation.generate import seeded
from genattrib.generation.trace import GenerationTrace


def _right_pad(sources: Sequence[Tensor], pad_id: int) -> tuple[Tensor, Tensor]:
    width = max(int(s.shape[0]) for s in sources)
    ids = torch.full((len(sources), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sources), width), dtype=torch.long)
    for i, s in enumerate(sources):
        ids[i, : s.shape[0]] = s
        mask[i, : s.shape[0]] = 1
    return ids, mask


def _trimmed(generated: Int[Tensor, " step"], eos: set[int]) -> Int[Tensor, " generated"]:
    """The generated tokens up to and including the first end token (the batch's padding after it
    dropped); a sequence without an end token ran to the length limit, so it has no padding."""
    values = generated.tolist()
    stop = next((i + 1 for i, t in enumerate(values) if t in eos), len(values))
    return generated[:stop].clone()


def generate_seq2seq_traces(
    model: nn.Module,
    prompt_ids: Sequence[Int[Tensor, " _prompt"]],
    generation_config: GenerationConfig,
    batch_size: int | None = None,
    seed: int | None = None,
) -> list[GenerationTrace]:
    """One trace per prompt (``source ids + [decoder start]``), generated ``batch_size`` sources at a time."""
    config = generation_config
    pad_id = config.pad_token_id if config.pad_token_id is not None else model.config.pad_token_id
    pad_id = int(pad_id if pad_id is not None else 0)
    eos = config.eos_token_id
    eos_ids = set() if eos is None else {int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])}
    size = batch_size or len(prompt_ids)
    device = execution_device(model.get_input_embeddings())
    traces: list[GenerationTrace] = []
    with seeded(seed, device), torch.no_grad():
        for start in range(0, len(prompt_ids), size):
            group = list(prompt_ids[start : start + size])
            ids, mask = _right_pad([p[:-1] for p in group], pad_id)
            decoder_start = torch.stack([p[-1:] for p in group])
            out = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                decoder_input_ids=decoder_start.to(device),
                generation_config=config,
            )
            sequences = out if isinstance(out, Tensor) else out.sequences
            for prompt, row in zip(group, sequences.cpu()):
                traces.append(GenerationTrace(prompt.clone(), _trimmed(row[1:], eos_ids)))
    return traces
