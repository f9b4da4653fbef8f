"""``AttributionModel``: a Hugging Face causal LM + tokenizer that can explain what it writes.

Example:
    >>> model = genattrib.load_model()                                   # doctest: +SKIP
    >>> out = model.attribute("The capital of France is", max_new_tokens=8)
    >>> out.show()
    Sequence 0 ...
    ...
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from transformers import GenerationConfig

from genattrib.devices import execution_device
from genattrib.engine import (
    GRANULAR_BUDGET_MB,
    Attributor,
    SequenceJob,
    build_jobs,
    eval_mode,
    resolve_keep_granular,
    run_attribution,
    teacher_forced_step_scores,
)
from genattrib.generation import GenerationTrace, generate_traces
from genattrib.methods import list_methods, method_class
from genattrib.models import inputs as inp
from genattrib.models.arguments import build_generation_config
from genattrib.models.assemble import assemble_output
from genattrib.models.convergence import warn_if_unconverged
from genattrib.models.estimate import Estimate, estimate_call
from genattrib.models.request import (
    AttributionRequest,
    check_batch_size,
    check_lengths,
    continuation_argument,
    prepare_request,
)
from genattrib.models.sources import source_spans
from genattrib.models.storage import check_storage, open_stream, plan_stream, record_storage, resume_hint
from genattrib.models.tokens import decode_tokens
from genattrib.models.units import CharSpans, structure_positions, unit_spans
from genattrib.output import FeatureAttributionOutput
from genattrib.seeding import check_seed
from genattrib.targets import TargetFunction, list_targets


class AttributionModel:
    """Wraps ``model`` and ``tokenizer`` (left unchanged) with a default attribution method."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        method: str = "saliency",
        *,
        name: str | None = None,
        revision: str | None = None,
        max_rows: int | None = None,
        device_map: Any = None,
    ) -> None:
        method_class(method)  # validates the name early
        self.model = model
        self.tokenizer = tokenizer
        self.method = method
        self.name = name or getattr(model.config, "_name_or_path", "") or type(model).__name__
        self.revision = revision
        self.max_rows = max_rows
        self.device_map = device_map
        self._targets: dict[str, TargetFunction] = {}

    def __repr__(self) -> str:
        return f"AttributionModel({self.name!r}, method={self.method!r}, dtype={self.dtype})"

    # --- facts ---------------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype

    @property
    def devices(self) -> list[str]:
        """Where the model computes: every module's execution device (an accelerate-offloaded
        module's weights sit on ``meta``; it runs where its hook loads them)."""
        return sorted(
            {
                str(execution_device(m))
                for m in self.model.modules()
                if next(m.parameters(recurse=False), None) is not None
            }
        )

    def list_methods(self) -> list[str]:
        return list_methods()

    @property
    def targets(self) -> dict[str, TargetFunction]:
        """Target functions registered on this model (see :meth:`register_target`)."""
        return dict(self._targets)

    def list_targets(self) -> list[str]:
        return list_targets(self._targets)

    def register_target(
        self,
        name: str,
        fn: Callable,
        *,
        differentiable: bool = True,
        needs_contrast: bool = False,
        description: str = "",
        merge: str = "sum",
    ) -> None:
        """Add a target function usable by name on this model (as attributed_fn or step score;
        ``merge``: how its step score merges over several generated tokens)."""
        self._targets[name] = TargetFunction(name, fn, description, differentiable, needs_contrast, merge)

    # --- the main call ---------------------------------------------------------------------
    def attribute(
        self,
        inputs: str | Sequence[Any],
        continuation: str | Sequence[Any] | torch.Tensor | None = None,
        *,
        target: str | Sequence[Any] | torch.Tensor | None = None,
        method: str | Attributor | None = None,
        attributed_fn: str | Callable | None = None,
        step_scores: Iterable[str | Callable] | Mapping[str, Any] | None = None,
        contrast_target: str | list[str] | None = None,
        chat: bool = False,
        batch_size: int | None = None,
        attr_pos_start: int | None = None,
        attr_pos_end: int | None = None,
        seed: int | None = None,
        generation_config: GenerationConfig | None = None,
        attribute_special_tokens: bool = False,
        keep_granular: bool | None = None,
        granular_budget_mb: int | float = GRANULAR_BUDGET_MB,
        top_k: int | None = None,
        stream_to: str | os.PathLike | None = None,
        max_rows: int | None = None,
        show_progress: bool | None = None,
        method_kwargs: Mapping[str, Any] | None = None,
        explain: str | Sequence[Sequence[int]] | CharSpans = "tokens",
        sources: str | Sequence[Sequence[int]] | CharSpans | None = None,
        sources_include_generated: bool = False,
        **kwargs: Any,
    ) -> FeatureAttributionOutput:
        """Generate (or force) a continuation for each prompt and attribute every generated token.

        ``inputs`` is a prompt, a list of prompts, a chat (list of ``{"role", "content"}``) or a
        list of chats. ``continuation`` is the text to explain instead of generating, one per
        prompt (text, or token ids used as they are); ``target=`` is its alias, the name Inseq
        users know. ``kwargs`` go to the method when it has a parameter of that name
        (``n_steps``, ``baseline`` ...; the same for a method name and a method object) and to
        generation otherwise (``max_new_tokens``, ``do_sample`` ...). ``batch_size`` prompts go
        through generation and attribution together (all at once by default); ``max_rows``
        caps the model rows per call inside that. ``attr_pos_start``/``attr_pos_end`` select
        generated steps (slice semantics, 0 = first generated token). Scores at or after each
        target position are NaN. ``attributed_fn`` is the function explained; ``None`` takes the
        method's own default (``logprob``; ``logit`` for ``rpi``, as its reference code), and the
        provenance records the one used.

        ``explain`` says what a row explains: ``"tokens"`` (each generated token), or units of
        the generated text, ``"words"``, ``"sentences"``, ``"paragraphs"``, ``"lines"``, token
        spans ``[(start, end), ...]`` (0 = first generated token) or :class:`CharSpans`. A unit
        row explains the combined value of its tokens (``attributed_fn``'s merge rule: the sum of
        log-probs for ``logprob``) from the positions before the unit, its own tokens held as
        they are; a gradient method then needs one backward per unit, not one per token.

        ``sources`` groups the prompt into source units: ``"sentences"``, ``"paragraphs"``,
        ``"documents"``, ``"lines"``, token spans of the sequence or :class:`CharSpans` of the
        prompt's text (with ``sources_include_generated``, the generated text too). Perturbation
        methods (occlusion, LIME, context ablation) then ablate whole units, so U units cost about
        U forward rows for every target of a sequence; every method records the units
        (``seq.source_spans``) and ``out.aggregate("sources")`` sums each unit's positions.

        Storage (see :mod:`genattrib.models.storage`): granular scores are kept (``keep_granular``
        None: when they fit) within ``granular_budget_mb`` (MiB, default 256; ``keep_granular=True``
        beyond it raises before any row is attributed). ``top_k=k`` keeps each row's k
        largest-|score| cells and the exact sum of the others (``seq.sparse_scores``; dropped
        cells read 0 in ``seq.scores``). ``stream_to="folder/"`` writes each finished batch of
        rows to a shard in the folder; re-running the same call with it resumes an interrupted
        run, and the result reads its rows from the folder (``FeatureAttributionOutput.load``).
        """
        t0 = time.perf_counter()
        storage = check_storage(top_k, stream_to, granular_budget_mb, keep_granular)
        forced, forced_name = continuation_argument(continuation, target)
        request = prepare_request(
            self,
            inputs,
            forced,
            continuation_name=forced_name,
            method=method,
            attributed_fn=attributed_fn,
            step_scores=step_scores,
            contrast_target=contrast_target,
            chat=chat,
            batch_size=batch_size,
            attr_pos_start=attr_pos_start,
            attr_pos_end=attr_pos_end,
            seed=seed,
            generation_config=generation_config,
            attribute_special_tokens=attribute_special_tokens,
            keep_granular=keep_granular,
            max_rows=max_rows,
            show_progress=show_progress,
            method_kwargs=method_kwargs,
            explain=explain,
            sources=sources,
            sources_include_generated=sources_include_generated,
            **kwargs,
        )
        writer = open_stream(self, request, storage)
        timings = {"validate": time.perf_counter() - t0}
        with resume_hint(writer), eval_mode(self.model):
            with _timed(timings, "generate"):
                traces = self._traces(request)
            units, sources = self._spans(request, traces)
            jobs = build_jobs(
                traces,
                self._special_ids(),
                request.steps,
                request.contrast_ids,
                request.keep_special,
                units,
                sources,
            )
            hidden = request.forward.hidden_size
            keep = resolve_keep_granular(
                request.attributor, jobs, hidden, request.keep_granular, storage.granular_budget_mb, storage.top_k
            )
            done = plan_stream(writer, jobs, keep, hidden, storage.top_k)
            with _timed(timings, "step_scores"):
                self._teacher_forced_step_scores(request, traces, jobs)
            with _timed(timings, "attribute"):
                results = run_attribution(
                    request.forward,
                    request.attributor,
                    request.attributed_fn,
                    jobs,
                    request.baseline,
                    request.run_seed,
                    keep,
                    request.show_progress,
                    request.batch_size,
                    top_k=storage.top_k,
                    granular_budget_mb=storage.granular_budget_mb,
                    sink=writer,
                    done=done,
                )
        out = assemble_output(self, request, traces, jobs, results, timings)
        warn_if_unconverged(out, request.attributor)
        out.provenance.timings["total"] = time.perf_counter() - t0
        return record_storage(out, storage, keep, writer)

    def estimate(
        self,
        inputs: str | Sequence[Any],
        continuation: str | Sequence[Any] | torch.Tensor | None = None,
        *,
        target: str | Sequence[Any] | torch.Tensor | None = None,
        granular_budget_mb: int | float = GRANULAR_BUDGET_MB,
        top_k: int | None = None,
        stream_to: str | os.PathLike | None = None,
        calibrate: bool = True,
        **kwargs: Any,
    ) -> Estimate:
        """What :meth:`attribute` with the same arguments would cost (rows, FLOPs, peak memory,
        predicted seconds), without running it: the call is checked and planned, and
        (``calibrate``) a short calibration on this device times the model. Without a
        continuation nothing is generated: ``max_new_tokens`` tokens are assumed (see
        :mod:`genattrib.models.estimate`).

        Example:
            >>> print(model.estimate(prompt, max_new_tokens=64, method="integrated_gradients"))  # doctest: +SKIP
        """
        storage = check_storage(top_k, stream_to, granular_budget_mb, kwargs.get("keep_granular"))
        forced, forced_name = continuation_argument(continuation, target)
        request = prepare_request(self, inputs, forced, continuation_name=forced_name, **kwargs)
        with eval_mode(self.model):
            return estimate_call(self, request, storage, calibrate)

    def generate(
        self,
        inputs: str | Sequence[Any],
        *,
        chat: bool = False,
        batch_size: int | None = None,
        seed: int | None = None,
        generation_config: GenerationConfig | None = None,
        show_progress: bool | None = None,
        **kwargs: Any,
    ) -> list[torch.Tensor]:
        """The token ids the model writes after each prompt (EOS trimmed), without attributing:
        what :meth:`attribute` would explain with the same settings; pass them back as ``continuation``.

        Example:
            >>> ids = model.generate(["The capital of France is"], max_new_tokens=4)
            >>> out = model.attribute(["The capital of France is"], ids, method="occlusion")
            >>> out.sequences[0].input_ids[-4:].tolist() == ids[0].tolist()
            True
        """
        check_batch_size(batch_size)
        check_seed(seed)
        prompt_ids = [inp.tokenize_prompt(self.tokenizer, p) for p in inp.normalize_prompts(inputs, chat)]
        config = build_generation_config(self.model, self.tokenizer, generation_config, kwargs, [])
        check_lengths(self.model, prompt_ids, None, config)
        with eval_mode(self.model):
            traces = generate_traces(
                self.model,
                prompt_ids,
                generation_config=config,
                step_targets={},
                batch_size=batch_size,
                seed=seed,
                tokenizer=self.tokenizer,
                show_progress=show_progress,
            )
        return [trace.generated_ids.clone() for trace in traces]

    # --- helpers -----------------------------------------------------------------------------
    def _traces(self, request: AttributionRequest) -> list[GenerationTrace]:
        """Generate (recording step scores on the way), or wrap the forced continuations."""
        if request.forced_ids is not None:
            return [GenerationTrace(p, f, forced=True) for p, f in zip(request.prompt_ids, request.forced_ids)]
        return generate_traces(
            self.model,
            request.prompt_ids,
            generation_config=request.generation_config,
            step_targets={} if _teacher_forced(request) else request.step_targets,
            batch_size=request.batch_size,
            seed=request.seed,
            tokenizer=self.tokenizer,
            show_progress=request.show_progress,
        )

    @staticmethod
    def _teacher_forced_step_scores(
        request: AttributionRequest, traces: list[GenerationTrace], jobs: list[SequenceJob]
    ) -> None:
        """Step scores that generation did not record (forced, contrastive or beam-search runs), teacher-forced."""
        if request.step_targets and (request.forced_ids is not None or _teacher_forced(request)):
            for trace, scores in zip(traces, teacher_forced_step_scores(request.forward, jobs, request.step_targets)):
                trace.step_scores = scores

    def _spans(self, request: AttributionRequest, traces: list[GenerationTrace]) -> tuple[list | None, list | None]:
        """(the explained units of every trace, or ``None`` for tokens; the source units of every
        trace, or ``None`` when ``sources`` was not given)."""
        if request.explain == "tokens" and request.sources is None:
            return None, None
        special = torch.tensor(self._special_ids(), dtype=torch.long)
        units, sources = [], []
        for prompt, trace in zip(request.prompts, traces):
            ids = trace.input_ids
            specials = torch.isin(ids, special)
            mask = torch.zeros_like(specials) if request.keep_special else specials
            steps = range(int(trace.generated_ids.shape[0]))[request.steps]
            tokens = decode_tokens(self.tokenizer, ids.tolist())
            roles = None if isinstance(prompt, str) else inp.chat_token_roles(prompt, tokens, trace.prompt_length)
            structure = structure_positions(specials, roles)  # never a unit of its own
            units.append(unit_spans(request.explain, tokens, trace.prompt_length, mask, steps, structure))
            if request.sources is not None:
                include, length = request.sources_include_generated, trace.prompt_length
                sources.append(source_spans(request.sources, tokens, length, mask, include, roles, specials))
        return (None if request.explain == "tokens" else units), (sources if request.sources is not None else None)

    def _special_ids(self) -> list[int]:
        return list(getattr(self.tokenizer, "all_special_ids", []) or [])


def _teacher_forced(request: AttributionRequest) -> bool:
    """Whether step scores are computed after generation rather than recorded during it: for a
    contrast (it needs the contrast tokens), and for beam search (a step's beams are reordered
    later, so what was recorded for row ``i`` need not belong to the returned sequence ``i``)."""
    return request.needs_contrast or int(request.generation_config.num_beams or 1) > 1


@contextlib.contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = time.perf_counter() - start
