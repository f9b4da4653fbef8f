"""Record step scores during ``generate`` through public hooks.

A forward hook on the LM head keeps the raw logits of the current step; a stopping criterion
(called right after each token is chosen, with the updated ids) turns them into step scores
for the chosen token. Both are removed when the context exits.

Example:
    >>> from genattrib.targets import resolve_target
    >>> inputs = tokenizer(prompt, return_tensors="pt")
    >>> with record_steps(hf_model, {"probability": resolve_target("probability")}) as recorder:
    ...     ids = hf_model.generate(**inputs, max_new_tokens=3, stopping_criteria=[recorder.criterion])
    >>> recorder.stacked()["probability"].shape           # (row, step)
    torch.Size([1, 3])
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from jaxtyping import Bool, Int
from torch import Tensor, nn
from transformers import StoppingCriteria

from genattrib.targets import TargetContext, TargetFunction


class _Criterion(StoppingCriteria):
    def __init__(self, recorder: StepRecorder) -> None:
        self.recorder = recorder

    def __call__(
        self, input_ids: Int[Tensor, "row position"], scores: Tensor | None, **kwargs: object
    ) -> Bool[Tensor, " row"]:
        self.recorder.record(input_ids[:, -1])
        self.recorder.on_step()
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


class StepRecorder:
    """Holds the last raw logits and the per-step scores computed from them."""

    def __init__(self, targets: dict[str, TargetFunction], on_step: Callable[[], None] = lambda: None) -> None:
        self.targets = targets
        self.on_step = on_step
        self.last_logits: Tensor | None = None
        self.steps: list[dict[str, Tensor]] = []
        self.criterion = _Criterion(self)

    def hook(self, module: nn.Module, inputs: tuple, output: Tensor) -> None:
        logits = output[0] if isinstance(output, tuple) else output
        self.last_logits = logits[:, -1].detach()

    def record(self, chosen: Int[Tensor, " row"]) -> None:
        if self.last_logits is None or not self.targets:  # nothing to record (e.g. beam search: done afterwards)
            self.last_logits = None
            return
        ctx = TargetContext(self.last_logits, chosen.to(self.last_logits.device))
        self.steps.append({name: t(ctx).float().cpu() for name, t in self.targets.items()})
        self.last_logits = None

    def stacked(self) -> dict[str, Tensor]:
        """``{name: (row, step)}`` for every recorded target."""
        if not self.steps:
            return {}
        return {name: torch.stack([s[name] for s in self.steps], dim=1) for name in self.targets}


@contextlib.contextmanager
def record_steps(
    model: nn.Module, targets: dict[str, TargetFunction], on_step: Callable[[], None] = lambda: None
) -> Iterator[StepRecorder]:
    """Attach a :class:`StepRecorder` to ``model``'s LM head for the block (``on_step()`` is called
    after each generated token, e.g. to advance a progress bar)."""
    recorder = StepRecorder(targets, on_step)
    handle = model.get_output_embeddings().register_forward_hook(recorder.hook)
    try:
        yield recorder
    finally:
        handle.remove()
