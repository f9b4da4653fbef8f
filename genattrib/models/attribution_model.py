"""``AttributionModel``: a Hugging Face causal LM + tokenizer that can explain what it writes.

Example:
    >>> model = genattrib.load_model()                                   # doctest: +SKIP
    >>> out = model.attribute("The capital of France is", max_new_tokens=8)
    >>> out.show()
    Sequence 0 ...
    ...
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from transformers import GenerationConfig

from genattrib.engine import GRANULAR_BUDGET_MB, Attributor, eval_mode
from genattrib.errors import InvalidArgumentError
from genattrib.generation import generate_traces
from genattrib.methods import list_methods, method_class
from genattrib.models.model_parts import ModelParts
from genattrib.models.options import inputs as inp
from genattrib.models.options.arguments import build_generation_config
from genattrib.models.options.attribute_options import AttributeOptions, resolve_legacy_top_k
from genattrib.models.options.explain_units import CharSpans
from genattrib.models.options.inseq_names import translate_inseq_arguments
from genattrib.models.options.request import check_batch_size, check_lengths
from genattrib.models.pipeline.estimate import Estimate, estimate_call
from genattrib.models.pipeline.stages import attribute_call, prepare_call
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
        self._probed: dict[object, object] = {}  # probe results of this model, kept across calls

    def __repr__(self) -> str:
        return f"AttributionModel({self.name!r}, method={self.method!r}, dtype={self.dtype})"

    # --- facts ---------------------------------------------------------------------------
    @property
    def parts(self) -> ModelParts:
        """What the attribution pipeline reads of this wrapper (:class:`~genattrib.models.model_parts.ModelParts`)."""
        return ModelParts(
            model=self.model,
            tokenizer=self.tokenizer,
            name=self.name,
            method=self.method,
            revision=self.revision,
            max_rows=self.max_rows,
            device_map=self.device_map,
            targets=dict(self._targets),
            probed=self._probed,
        )

    @property
    def dtype(self) -> torch.dtype:
        return self.parts.dtype

    @property
    def devices(self) -> list[str]:
        """Where the model computes: every module's execution device (an accelerate-offloaded
        module's weights sit on ``meta``; it runs where its hook loads them)."""
        return self.parts.devices

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
        inputs: str | Sequence[Any] | None = None,
        continuation: str | Sequence[Any] | torch.Tensor | None = None,
        *,
        target: str | Sequence[Any] | torch.Tensor | None = None,
        method: str | Attributor | None = None,
        attributed_fn: str | Callable | None = None,
        step_scores: Iterable[str | Callable] | Mapping[str, Any] | None = None,
        contrast_target: str | list[str] | torch.Tensor | None = None,
        contrast_prompt: str | Sequence[Any] | None = None,
        contrast_continuation: str | Sequence[Any] | torch.Tensor | None = None,
        contrast_force_inputs: bool = False,
        contrast_alignments: Sequence[Any] | None = None,
        chat: bool = False,
        batch_size: int | None = None,
        attr_pos_start: int | None = None,
        attr_pos_end: int | None = None,
        seed: int | None = None,
        generation_config: GenerationConfig | None = None,
        attribute_special_tokens: bool = False,
        keep_granular: bool | None = None,
        granular_budget_mb: int | float = GRANULAR_BUDGET_MB,
        top_k_scores: int | None = None,
        stream_to: str | os.PathLike | None = None,
        max_rows: int | None = None,
        show_progress: bool | None = None,
        method_kwargs: Mapping[str, Any] | None = None,
        explain: str | Sequence[Sequence[int]] | CharSpans = "tokens",
        sources: str | Sequence[Sequence[int]] | CharSpans | None = None,
        sources_include_generated: bool = False,
        attribute_prefix: bool | None = None,
        **kwargs: Any,
    ) -> FeatureAttributionOutput:
        """Generate (or force) a continuation for each prompt and attribute every generated token.

        ``inputs`` is a prompt, a list of prompts, a chat (list of ``{"role", "content"}``) or a
        list of chats. ``continuation`` is the text to explain instead of generating, one per
        prompt (text, or token ids used as they are); ``target=`` is its alias, the name Inseq
        users know. ``kwargs`` go to the method when it has a parameter of that name
        (``n_steps``, ``baseline`` ...; the same for a method name and a method object) and to
        generation otherwise (``max_new_tokens``, ``do_sample``, ``top_k`` ...). ``batch_size`` prompts go
        through generation and attribution together (all at once by default); ``max_rows``
        caps the model rows per call inside that. ``attr_pos_start``/``attr_pos_end`` select
        generated steps (slice semantics, 0 = first generated token). Scores at or after each
        target position are NaN. ``attributed_fn`` is the function explained; ``None`` takes the
        method's own default (``logprob``; ``logit`` for ``rpi``, as its reference code), and the
        provenance records the one used.

        Contrast: ``contrast_target=`` gives alternative tokens under the same input;
        ``contrast_prompt=`` (e.g. the prompt without its context) and ``contrast_continuation=``
        give a *different input* (Inseq's ``contrast_sources``/``contrast_targets``): the
        contrastive functions (``contrast_prob``, ``pcxmi``, ``kl_divergence`` ...; see
        docs/methods.md) then read the prediction under that input at the aligned step (step
        ``i`` of the continuation with step ``i`` of the contrast continuation, which defaults to
        the continuation itself; aligned from the end when their lengths differ). Step scores
        always read it; an attributed function reads only the contrast *tokens* under the real
        input, unless ``contrast_force_inputs=True`` (as in Inseq). ``contrast_alignments=[(i, j),
        ...]`` (Inseq's ``contrast_targets_alignments``; one list per prompt for several) aligns
        the token at index ``i`` of the sequence with the contrast sequence's token ``j`` instead
        (indices of the decoder's tokens: prompt + continuation, or on an encoder-decoder model
        the decoder start + target); steps without a pair align from the end.

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

        On an encoder-decoder model (T5, BART, Marian, mT5, NLLB) the prompt is the source (the
        encoder's input) and each generated token is attributed to the source tokens and, with
        ``attribute_prefix=True``, to the target prefix before it too (the decoder start and the
        earlier generated tokens; Inseq's ``attribute_target=True``). By default (``None``) only the
        source is attributed there, the target prefix held as it is; decoder-only models always
        attribute the whole prefix. ``seq.source_scores`` and ``seq.target_scores`` split the two sides.

        Storage (see :mod:`genattrib.models.results.storage`): granular scores are kept (``keep_granular``
        None: when they fit) within ``granular_budget_mb`` (MiB, default 256; ``keep_granular=True``
        beyond it raises before any row is attributed). ``top_k_scores=k`` keeps each row's k
        largest-|score| cells and the exact sum of the others (``seq.sparse_scores``; dropped
        cells read 0 in ``seq.scores``; ``top_k=`` is generation's top-k, as in Hugging Face: with
        ``do_sample=True`` it reaches ``generate``, and until the next release, where nothing samples,
        it still means ``top_k_scores=`` with a ``FutureWarning``). ``stream_to="folder/"`` writes
        each finished batch of rows to a shard in the folder; re-running the same call with it
        resumes an interrupted run, and the result reads its rows from the folder
        (``FeatureAttributionOutput.load``).

        Inseq's names are accepted with a ``FutureWarning`` naming genattrib's: ``input_texts=``,
        ``generated_texts=`` (prompt + continuation), ``generation_args=``, ``contrast_targets=``,
        ``contrast_sources=``; ``attribute_target=``, ``output_step_attributions=`` and the like
        have no effect (see docs/migrating-from-inseq.md).
        """
        t0 = time.perf_counter()
        inputs, continuation, kwargs = translate_inseq_arguments(
            inputs, continuation, kwargs, encoder_decoder=self.parts.is_encoder_decoder
        )
        if inputs is None:
            raise InvalidArgumentError("inputs", "no prompt was given", "pass attribute('The prompt', ...)")
        contrast = {k: kwargs.pop(k) for k in ("contrast_prompt", "contrast_continuation") if k in kwargs}
        if contrast:  # Inseq's contrast names, translated
            contrast_prompt = contrast.get("contrast_prompt", contrast_prompt)
            contrast_continuation = contrast.get("contrast_continuation", contrast_continuation)
        if "attribute_prefix" in kwargs:  # Inseq's attribute_target=, translated
            if attribute_prefix is not None:
                raise InvalidArgumentError("attribute_target", "given with attribute_prefix=", "pass one of them")
            attribute_prefix = kwargs.pop("attribute_prefix")
        options = _options(locals(), kwargs, forced=continuation is not None or target is not None, model=self.model)
        return attribute_call(prepare_call(self.parts, inputs, continuation, target, options), t0)

    def estimate(
        self,
        inputs: str | Sequence[Any],
        continuation: str | Sequence[Any] | torch.Tensor | None = None,
        *,
        target: str | Sequence[Any] | torch.Tensor | None = None,
        granular_budget_mb: int | float = GRANULAR_BUDGET_MB,
        top_k_scores: int | None = None,
        stream_to: str | os.PathLike | None = None,
        calibrate: bool = True,
        **kwargs: Any,
    ) -> Estimate:
        """What :meth:`attribute` with the same arguments would cost (rows, FLOPs, peak memory,
        predicted seconds), without running it: the call is checked and planned, and
        (``calibrate``) a short calibration on this device times the model. Without a
        continuation nothing is generated: ``max_new_tokens`` tokens are assumed (see
        :mod:`genattrib.models.pipeline.estimate`).

        Example:
            >>> print(model.estimate(prompt, max_new_tokens=64, method="integrated_gradients"))  # doctest: +SKIP
        """
        forced = continuation is not None or target is not None
        options = _options(
            {"granular_budget_mb": granular_budget_mb, "top_k_scores": top_k_scores, "stream_to": stream_to},
            kwargs,
            forced=forced,
            model=self.model,
        )
        call = prepare_call(self.parts, inputs, continuation, target, options)
        with eval_mode(self.model):
            return estimate_call(call, calibrate)

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
                step_functions={},
                batch_size=batch_size,
                seed=seed,
                tokenizer=self.tokenizer,
                show_progress=show_progress,
            )
        return [trace.generated_ids.clone() for trace in traces]


def _options(
    arguments: Mapping[str, Any], kwargs: Mapping[str, Any], *, forced: bool, model: nn.Module
) -> AttributeOptions:
    """The :class:`AttributeOptions` of a call: its named options and ``**kwargs``, with a legacy
    storage ``top_k`` moved to ``top_k_scores`` (see ``resolve_legacy_top_k``)."""
    named = {k: v for k, v in arguments.items() if k in AttributeOptions.names()}
    options = AttributeOptions.from_arguments({**named, **kwargs})
    return resolve_legacy_top_k(options, getattr(model, "generation_config", None), forced)
