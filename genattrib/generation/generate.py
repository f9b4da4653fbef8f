"""Generate continuations once (KV cache, batched, left-padded) and return traces.

Example:
    >>> from transformers import GenerationConfig
    >>> ids = tokenizer(prompt, return_tensors="pt").input_ids[0]
    >>> pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    >>> cfg = GenerationConfig(max_new_tokens=3, pad_token_id=pad, eos_token_id=eos)
    >>> traces = generate_traces(hf_model, [ids], generation_config=cfg)
    >>> traces[0].prompt_ids.shape, traces[0].generated_ids.shape
    (torch.Size([6]), torch.Size([3]))
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor, nn
from transformers import GenerationConfig, StoppingCriteriaList
from transformers.generation.stopping_criteria import StopStringCriteria

from genattrib.devices import execution_device, is_oom, release_cached_memory
from genattrib.generation.recorder import record_steps
from genattrib.generation.trace import GenerationTrace
from genattrib.progress import progress_bar
from genattrib.targets import TargetFunction


@contextlib.contextmanager
def seeded(seed: int | None, *devices: torch.device) -> Iterator[None]:
    """Seed torch's RNG for the block and restore the previous state after (of the CPU and of the
    GPUs among ``devices``: a sharded model samples on its head's device, not its input's)."""
    if seed is None:
        yield
        return
    gpus = sorted({d for d in devices if d.type == "cuda"}, key=str)
    with torch.random.fork_rng(devices=gpus):
        torch.manual_seed(seed)
        yield


def _eos_ids(config: GenerationConfig) -> set[int]:
    eos = config.eos_token_id
    if eos is None:
        return set()
    return {int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])}


def _left_pad(prompts: list[Int[Tensor, " _prompt"]], pad_id: int) -> tuple[Tensor, Tensor]:
    width = max(int(p.shape[0]) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - p.shape[0] :] = p
        mask[i, width - p.shape[0] :] = 1
    return ids, mask


def _trim(generated: Tensor, eos: set[int]) -> Tensor:
    for i, tok in enumerate(generated.tolist()):
        if tok in eos:
            return generated[: i + 1]
    return generated


def _stop_string_lengths(sequences: Int[Tensor, "row position"], width: int, stop: StopStringCriteria) -> list[int]:
    """How many generated tokens of each row go up to and including the token that completed a
    stop string (all of them when none did): ``generate`` stops such a row there and pads the rest."""
    total = int(sequences.shape[1]) - width
    lengths = [total] * int(sequences.shape[0])
    open_rows = set(range(len(lengths)))
    for k in range(1, total + 1):
        if not open_rows:
            break
        hit = stop(sequences[:, : width + k], None).tolist()
        for row in [r for r in open_rows if hit[r]]:
            lengths[row] = k
            open_rows.discard(row)
    return lengths


def _new_tokens(config: GenerationConfig, width: int) -> int:
    """The most tokens ``generate`` writes after a (left-padded) prompt batch of ``width``."""
    if config.max_new_tokens is not None:
        return int(config.max_new_tokens)
    return max(0, int(config.max_length or 0) - width)


def _rng_state(gpus: list[torch.device]) -> tuple[Tensor, list[Tensor]]:
    return torch.get_rng_state(), [torch.cuda.get_rng_state(d) for d in gpus]


def _set_rng_state(state: tuple[Tensor, list[Tensor]], gpus: list[torch.device]) -> None:
    torch.set_rng_state(state[0])
    for device, gpu_state in zip(gpus, state[1]):
        torch.cuda.set_rng_state(gpu_state, device)


def generate_traces(
    model: nn.Module,
    prompts: list[Int[Tensor, " _prompt"]],
    *,
    generation_config: GenerationConfig,
    step_functions: dict[str, TargetFunction] | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
    tokenizer: Any = None,
    show_progress: bool | None = None,
) -> list[GenerationTrace]:
    """Generate for every prompt (in batches of ``batch_size``, default all at once) and record
    step scores.

    ``tokenizer`` is needed for ``stop_strings`` in the config (each sequence then ends with the
    token that completed a stop string); ``show_progress`` shows a bar of generated tokens
    (see :func:`genattrib.progress.progress_bar`).

    A batch that runs out of memory (GPU, or the CPU allocator) is halved and retried, and later
    batches stay at the smaller size. Greedy and beam search give the same tokens however the
    prompts are batched (up to exact ties between logits); sampling draws from one random stream
    per batch, so sampled text depends on ``seed`` *and* on the batches: a retried batch restarts
    from the random state it started with, so a call is reproduced by the same seed and the same
    batches (``batch_size``, or the size the halving settled on).
    """
    device = execution_device(model.get_input_embeddings())
    head = model.get_output_embeddings()
    devices = {device, device if head is None else execution_device(head)}
    gpus = sorted({d for d in devices if d.type == "cuda"}, key=str)
    size = batch_size or max(1, len(prompts))
    widths = [max(int(p.shape[0]) for p in prompts[s : s + size]) for s in range(0, len(prompts), size)]
    total = sum(_new_tokens(generation_config, w) for w in widths)
    traces: list[GenerationTrace] = []
    with seeded(seed, *devices), progress_bar(total, "generate", show_progress, unit="tokens") as advance:
        start = 0
        while start < len(prompts):
            chunk = prompts[start : start + size]
            state = _rng_state(gpus)
            try:
                batch = _generate_batch(
                    model, chunk, generation_config, step_functions or {}, device, tokenizer, advance
                )
            except Exception as error:  # noqa: BLE001 - only running out of memory is handled
                if not is_oom(error) or len(chunk) == 1:
                    raise
                size = max(1, len(chunk) // 2)
                _set_rng_state(state, gpus)  # the retry draws what a batch of this size would have drawn
                release_cached_memory(devices)
                continue
            traces.extend(batch)
            start += len(chunk)
    return traces


def _generate_batch(
    model: nn.Module,
    chunk: list[Int[Tensor, " _prompt"]],
    generation_config: GenerationConfig,
    step_functions: dict[str, TargetFunction],
    device: torch.device,
    tokenizer: Any,
    advance: Any,
) -> list[GenerationTrace]:
    """One ``model.generate`` call over the left-padded ``chunk`` of prompts."""
    strings = generation_config.stop_strings
    # without a tokenizer, generate itself refuses stop strings, saying it needs one
    stop = StopStringCriteria(tokenizer, strings) if strings and tokenizer is not None else None
    extra = {} if tokenizer is None else {"tokenizer": tokenizer}
    ids, mask = _left_pad(chunk, int(generation_config.pad_token_id))
    with record_steps(model, step_functions, advance) as recorder, torch.no_grad():
        out = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            generation_config=generation_config,
            stopping_criteria=StoppingCriteriaList([recorder.criterion]),
            **extra,
        )
    sequences = (out.sequences if hasattr(out, "sequences") else out).cpu()
    steps = recorder.stacked()
    eos = _eos_ids(generation_config)
    width = int(ids.shape[1])
    lengths = None if stop is None else _stop_string_lengths(sequences, width, stop)
    traces = []
    for row, prompt in enumerate(chunk):
        generated = sequences[row, width:]
        if lengths is not None:
            generated = generated[: lengths[row]]
        generated = _trim(generated, eos)
        n = int(generated.shape[0])
        traces.append(
            GenerationTrace(
                prompt_ids=prompt.clone(),
                generated_ids=generated.clone(),
                step_scores={name: values[row, :n].clone() for name, values in steps.items()},
            )
        )
    return traces
