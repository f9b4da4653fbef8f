"""Step 1 of :meth:`AttributionModel.attribute`: check everything the user passed, before any
heavy work, and turn the :class:`AttributeOptions` into one :class:`AttributionRequest` that the
later steps read.

Nothing the user passed is mutated. Errors name the argument and the fix.

Example:
    >>> options = AttributeOptions(kwargs={"max_new_tokens": 4})
    >>> request = prepare_request(model.parts, ModelForward(model.model), "The capital of France is", None, options)
    >>> request.attributor.name, len(request.prompt_ids), request.generation_config.max_new_tokens
    ('saliency', 1, 4)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jaxtyping import Int
from torch import Tensor
from transformers import GenerationConfig

from genattrib.engine import UNIT_RULES, Attributor, ModelForward, ResolvedBaseline, bind_resources
from genattrib.engine.contrast_inputs import check_alignments
from genattrib.errors import InvalidArgumentError
from genattrib.methods import get_method, list_methods, method_class
from genattrib.models.model_parts import ModelParts
from genattrib.models.options import inputs as inp
from genattrib.models.options import seq2seq_inputs as seq2seq
from genattrib.models.options.arguments import (
    build_generation_config,
    resolve_baseline,
    resolve_step_scores,
    split_kwargs,
)
from genattrib.models.options.attribute_options import AttributeOptions
from genattrib.models.options.explain_units import CharSpans, check_explain
from genattrib.models.options.method_resources import tokenizer_resources
from genattrib.models.options.sources import check_sources
from genattrib.seeding import DEFAULT_SEED, check_seed, run_seed
from genattrib.targets import TargetFunction, resolve_target
from genattrib.validation import check_int, check_positive_int


@dataclass(frozen=True)
class AttributionRequest:
    """Everything one ``attribute()`` call needs, validated: the checked :class:`AttributeOptions`
    and what they resolve to (token ids, the bound method, target functions, generation settings).

    It holds no model state: the :class:`~genattrib.engine.ModelForward` that runs the call (and
    counts its work) is made per call next to it.
    """

    options: AttributeOptions
    prompts: list[inp.Prompt]
    prompt_ids: list[Int[Tensor, " _prompt"]]
    forced_ids: list[Int[Tensor, " _generated"]] | None
    contrast_ids: list[Int[Tensor, " _contrast"]] | None
    attributor: Attributor
    attributed_fn: TargetFunction
    step_functions: dict[str, TargetFunction]
    generation_config: GenerationConfig
    baseline: ResolvedBaseline | None
    seed: int | None
    contrast_prompt_ids: list[Int[Tensor, " _prompt"]] | None = None
    contrast_continuation_ids: list[Int[Tensor, " _generated"]] | None = None

    @property
    def has_contrast_input(self) -> bool:
        """Whether a contrast prompt or continuation (a different input) was given."""
        return self.contrast_prompt_ids is not None or self.contrast_continuation_ids is not None

    @property
    def steps(self) -> slice:
        """The generated steps attributed (``attr_pos_start``/``attr_pos_end``)."""
        return slice(self.options.attr_pos_start, self.options.attr_pos_end)

    @property
    def keep_special(self) -> bool:
        return self.options.attribute_special_tokens

    @property
    def keep_granular(self) -> bool | None:
        return self.options.keep_granular

    @property
    def batch_size(self) -> int | None:
        return self.options.batch_size

    @property
    def show_progress(self) -> bool | None:
        return self.options.show_progress

    @property
    def explain(self) -> str | list[tuple[int, int]] | CharSpans:
        return self.options.explain  # type: ignore[return-value]

    @property
    def sources(self) -> str | list[tuple[int, int]] | CharSpans | None:
        return self.options.sources  # type: ignore[return-value]

    @property
    def sources_include_generated(self) -> bool:
        return self.options.sources_include_generated

    @property
    def run_seed(self) -> int:
        """The seed generation and the methods use (:func:`genattrib.seeding.run_seed` chose it
        when none was given), recorded in the provenance."""
        return DEFAULT_SEED if self.seed is None else int(self.seed)

    @property
    def needs_contrast(self) -> bool:
        return needs_contrast(self.attributed_fn, self.step_functions)


def needs_contrast(attributed_fn: TargetFunction, step_functions: Mapping[str, TargetFunction]) -> bool:
    """Whether the attributed function or a step score compares with a contrast token."""
    return attributed_fn.needs_contrast or any(t.needs_contrast for t in step_functions.values())


def continuation_argument(continuation: object, target: object) -> tuple[object, str]:
    """(the forced continuation, the name the user gave it): ``continuation``, or its alias
    ``target`` (Inseq's name for it), so that errors name the argument the user wrote."""
    if target is not None and continuation is not None:
        raise InvalidArgumentError(
            "target",
            "both continuation= and its alias target= were given",
            "pass the forced text once, as continuation=",
        )
    return (continuation, "continuation") if target is None else (target, "target")


def check_batch_size(batch_size: object) -> None:
    check_positive_int("batch_size", batch_size, "batch_size=8", optional=True)


def check_lengths(
    model: Any,
    prompt_ids: Sequence[Tensor],
    forced_ids: Sequence[Tensor] | None,
    config: GenerationConfig,
    argument: str = "inputs",
) -> None:
    """Every prompt plus its continuation fits the model's context window (``argument``: the prompts' name)."""
    window = inp.context_window(model.config)
    if window is None:
        return
    for i, ids in enumerate(prompt_ids):
        if forced_ids is not None:
            extra = int(forced_ids[i].shape[0])
        elif config.max_new_tokens is not None:
            extra = int(config.max_new_tokens)
        else:  # max_length= counts the prompt too
            extra = max(0, int(config.max_length or 0) - int(ids.shape[0]))
        total = int(ids.shape[0]) + extra
        if int(ids.shape[0]) >= window or total > window:
            raise InvalidArgumentError(
                argument,
                f"prompt {i} has {int(ids.shape[0])} tokens and needs room for {extra} more, "
                f"but the model's context window is {window} tokens",
                "shorten the prompt, or lower max_new_tokens / max_length / the forced target (continuation=)",
            )


def check_step_window(
    prompt_ids: Sequence[Tensor], forced_ids: Sequence[Tensor] | None, config: GenerationConfig, steps: slice
) -> None:
    """``attr_pos_start``/``attr_pos_end`` select a step of every continuation the call can produce.

    A forced continuation has a known length; a generated one has at most ``max_new_tokens``
    (or ``max_length`` less the prompt) and may stop earlier at an end token, so a window is
    refused here only when it selects nothing for *every* possible length (generation may still
    stop too early for it: that is checked after generation).
    """
    if steps.start is None and steps.stop is None:
        return
    for i, ids in enumerate(prompt_ids):
        if forced_ids is not None:
            lengths = [int(forced_ids[i].shape[0])]
        elif config.max_new_tokens is not None:
            lengths = list(range(1, int(config.max_new_tokens) + 1))
        else:
            lengths = list(range(1, max(1, int(config.max_length or 0) - int(ids.shape[0])) + 1))
        if not any(len(range(n)[steps]) for n in lengths):
            raise InvalidArgumentError(
                "attr_pos_start",
                f"attr_pos_start={steps.start}, attr_pos_end={steps.stop} select no step of the at most "
                f"{lengths[-1]} tokens attributed for prompt {i}",
                f"use indices in [0, {lengths[-1]}) or None",
            )


def resolve_method(
    spec: str | Attributor,
    kwargs: Mapping[str, Any],
    method_kwargs: Mapping[str, Any] | None,
    resources: Mapping[str, Callable[[], Any]],
) -> tuple[Attributor, dict[str, Any]]:
    """(the method, bound to the resources it requires; the keyword arguments left for generation).

    A method name and a method object take the same keyword parameters.
    """
    cls = type(spec) if isinstance(spec, Attributor) else method_class(spec)
    params, generation = split_kwargs(kwargs, cls.param_names())
    params.update(method_kwargs or {})
    return bind_resources(get_method(spec, **params), resources), generation


def prepare_request(
    model: ModelParts,
    forward: ModelForward,
    inputs: str | Sequence[Any],
    continuation: object = None,
    options: AttributeOptions | None = None,
    *,
    continuation_name: str = "continuation",
) -> AttributionRequest:
    """Validate an ``attribute()`` call (see its docstring for the arguments); ``forward`` runs
    ``model``'s one-token probe (:meth:`~genattrib.engine.Attributor.check_model`)."""
    o = options or AttributeOptions()
    check_seed(o.seed)
    for name, value in (("attr_pos_start", o.attr_pos_start), ("attr_pos_end", o.attr_pos_end)):
        check_int(name, value, f"{name}=0 (a step index; negative counts from the end)", optional=True)
    check_positive_int("max_rows", o.max_rows, "max_rows=64, or None to size chunks from memory", optional=True)
    if o.keep_granular is not None and not isinstance(o.keep_granular, bool):
        raise InvalidArgumentError(
            "keep_granular", f"expected True, False or None, got {o.keep_granular!r}", "pass keep_granular=True"
        )
    o = o.replace(explain=check_explain(o.explain), sources=check_sources(o.sources))
    if not isinstance(o.sources_include_generated, bool):
        raise InvalidArgumentError(
            "sources_include_generated", f"{o.sources_include_generated!r} is not a bool", "pass True or False"
        )
    if o.sources_include_generated and o.sources is None:
        raise InvalidArgumentError(
            "sources_include_generated",
            "True only groups generated text into source units, and no sources= were asked for",
            "pass sources='sentences' (or another unit) with it, or drop sources_include_generated=True",
        )
    attributor, gen_kwargs = resolve_method(
        o.method if o.method is not None else model.method,
        o.kwargs,
        o.method_kwargs,
        tokenizer_resources(model.tokenizer),
    )
    default_fn = attributor.traits.default_attributed_fn
    fn = resolve_target(default_fn if o.attributed_fn is None else o.attributed_fn, model.targets)
    step_functions = resolve_step_scores(o.step_scores, model.targets)
    if fn.noisy_passes:
        raise InvalidArgumentError(
            "attributed_fn",
            f"{fn.name!r} runs {fn.noisy_passes} MC-dropout passes per step: it is a step score only",
            f"pass step_scores=[{fn.name!r}] and attribute e.g. attributed_fn='probability'",
        )
    check_batch_size(o.batch_size)
    prompts = inp.normalize_prompts(inputs, o.chat)
    forced = inp.normalize_targets(continuation, len(prompts), continuation_name)
    contrasts = inp.normalize_targets(o.contrast_target, len(prompts), "contrast_target")
    contrast_prompts = check_contrast_prompts(o.contrast_prompt, prompts, o.chat)
    contrast_continuations = inp.normalize_targets(o.contrast_continuation, len(prompts), "contrast_continuation")
    has_input = contrast_prompts is not None or contrast_continuations is not None
    check_contrast_force_inputs(o.contrast_force_inputs, has_input)
    o = o.replace(contrast_alignments=check_alignments(o.contrast_alignments, len(prompts), has_input))
    if needs_contrast(fn, step_functions) and contrasts is None and not has_input:
        raise InvalidArgumentError(
            "contrast_target",
            "a contrastive target was asked for but no contrast given",
            "pass contrast_target='an alternative continuation', or contrast_prompt='the prompt without its context'",
        )
    tok = model.tokenizer
    if model.is_encoder_decoder:  # the prompt is the source: its ids, then the decoder start
        seq2seq.check_seq2seq_call(o, attributor, model.model)
        start_id = seq2seq.decoder_start_id(model.model)
        prompt_ids = [seq2seq.source_ids(tok, p, start_id) for p in prompts]
        forced_ids = None if forced is None else [seq2seq.target_ids(tok, t, continuation_name) for t in forced]
        contrast_ids, c_prompt_ids, c_continuation_ids = seq2seq.contrast_ids_of(
            tok, start_id, contrasts, contrast_prompts, contrast_continuations
        )
    else:
        seq2seq.check_decoder_only_call(o)
        prompt_ids = [inp.tokenize_prompt(tok, p) for p in prompts]
        c_prompt_ids = None if contrast_prompts is None else [inp.tokenize_prompt(tok, p) for p in contrast_prompts]
        c_continuation_ids = (
            None
            if contrast_continuations is None
            else [
                inp.tokenize_continuation(tok, p, c, "contrast_continuation")
                for p, c in zip(c_prompt_ids or prompt_ids, contrast_continuations)
            ]
        )
        forced_ids = (
            None
            if forced is None
            else [inp.tokenize_continuation(tok, p, t, continuation_name) for p, t in zip(prompt_ids, forced)]
        )
        contrast_ids = (
            None
            if contrasts is None
            else [inp.tokenize_continuation(tok, p, c, "contrast_target") for p, c in zip(prompt_ids, contrasts)]
        )
    config = build_generation_config(model.model, tok, o.generation_config, gen_kwargs, type(attributor).param_names())
    check_lengths(model.model, prompt_ids, forced_ids, config)
    if c_prompt_ids is not None or c_continuation_ids is not None:  # the contrast sequences run through the model too
        check_lengths(
            model.model, c_prompt_ids or prompt_ids, c_continuation_ids or forced_ids, config, "contrast_prompt"
        )
    check_step_window(prompt_ids, forced_ids, config, slice(o.attr_pos_start, o.attr_pos_end))
    seed = run_seed(o.seed, samples=forced_ids is None and bool(config.do_sample))
    baseline = None
    if attributor.traits.uses_baseline:  # checked before check_model's one-token probe: no forward for a bad argument
        baseline = resolve_baseline(getattr(attributor.params, "baseline", None), tok, forward.hidden_size)
    attributor.check_model(forward, fn)
    if o.explain != "tokens":
        check_units_supported(attributor, fn)
    return AttributionRequest(
        options=o,
        prompts=prompts,
        prompt_ids=prompt_ids,
        forced_ids=forced_ids,
        contrast_ids=contrast_ids,
        attributor=attributor,
        attributed_fn=fn,
        step_functions=step_functions,
        generation_config=config,
        baseline=baseline,
        seed=seed,
        contrast_prompt_ids=c_prompt_ids,
        contrast_continuation_ids=c_continuation_ids,
    )


def check_contrast_force_inputs(value: object, has_input: bool) -> None:
    """``contrast_force_inputs`` is a bool, and only given with a contrast input."""
    if not isinstance(value, bool):
        raise InvalidArgumentError("contrast_force_inputs", f"{value!r} is not a bool", "pass True or False")
    if value and not has_input:
        raise InvalidArgumentError(
            "contrast_force_inputs",
            "True reads the contrast input's predictions in the attributed function, but no contrast input was given",
            "pass contrast_prompt= or contrast_continuation= with it, or drop contrast_force_inputs=True",
        )


def check_contrast_prompts(contrast_prompt: object, prompts: Sequence[inp.Prompt], chat: bool) -> list | None:
    """One contrast prompt per prompt, each in the same form as its prompt (a chat for a chat, so
    both go through the same chat template; text for text)."""
    if contrast_prompt is None:
        return None
    contrast = inp.normalize_prompts(contrast_prompt, chat)
    if len(contrast) == 1 and len(prompts) > 1:
        contrast = contrast * len(prompts)
    if len(contrast) != len(prompts):
        raise InvalidArgumentError(
            "contrast_prompt",
            f"{len(contrast)} contrast prompts for {len(prompts)} prompts",
            "pass one contrast prompt, or one per prompt",
        )
    for i, (p, c) in enumerate(zip(prompts, contrast)):
        if isinstance(p, str) != isinstance(c, str):
            kinds = ("text", "a chat (chat template applied)")
            raise InvalidArgumentError(
                "contrast_prompt",
                f"prompt {i} is {kinds[not isinstance(p, str)]} but its contrast prompt is "
                f"{kinds[not isinstance(c, str)]}: the two would use different chat templates",
                "pass the contrast prompt in the same form as the prompt (a list of messages for a chat)",
            )
    return contrast


def check_units_supported(attributor: Attributor, fn: TargetFunction) -> None:
    """Unit rows need a method that explains them and a target whose values combine."""
    if not attributor.traits.supports_units:
        units = sorted(name for name in list_methods() if method_class(name).traits.supports_units)
        raise InvalidArgumentError(
            "explain",
            f"method {attributor.name!r} explains single tokens only",
            f"explain='tokens', or use a method that explains units: {', '.join(units)}",
        )
    if fn.merge not in UNIT_RULES:
        raise InvalidArgumentError(
            "explain",
            f"the attributed function {fn.name!r} does not combine over tokens (merge rule {fn.merge!r})",
            f"explain='tokens', or use a target whose merge rule is one of {', '.join(UNIT_RULES)} (e.g. logprob)",
        )
