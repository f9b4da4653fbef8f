"""``attribute_context``: PECoRe's two steps (Sarti et al., ICLR 2024), as Inseq's ``attribute-context``.

1. **Context-sensitive token identification.** The output is scored token by token, teacher-forced,
   with a contrastive metric (``kl_divergence`` by default, or ``pcxmi``) between the prediction
   *without* the context (the input, and the output, with their contexts left out) and the
   prediction *with* it; the tokens whose score reaches ``mean + k·std`` (``k`` =
   ``context_sensitivity_std_threshold``, 1 by default) are selected, at most
   ``context_sensitivity_topk``.
2. **Contextual cues imputation.** Each selected token is attributed, with any genattrib method,
   to the input and output contexts through a contrastive attributed function
   (``contrast_prob_diff`` by default: the token against what the model predicts there without
   the context).

Decoder-only models take the input as the prompt (plain text, or a chat with ``chat=True``: the
templates then fill the user message, and the chat template frames both versions alike) and the
output as its continuation. Encoder-decoder models (T5, BART, Marian ...) take the input as the
source and the output as the target: the input context is in the source, the output context in
the target prefix (attributed with ``attribute_prefix=True``), and the target's closing ``</s>``
is no candidate in step one.

Example:
    >>> model = genattrib.load_model()                               # doctest: +SKIP
    >>> out = genattrib.attribute_context(                           # doctest: +SKIP
    ...     model, "Where does Anna live?", input_context_text="Anna moved to Lisbon in 2019.", max_new_tokens=8
    ... )
    >>> out.show()                                                    # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch

from genattrib.context import model_sides as sides
from genattrib.context.context_tokens import context_token_mask, format_template, prompt_of
from genattrib.context.results import ContextAttributionOutput, ContextCue
from genattrib.context.selection import select_tokens, std_threshold
from genattrib.engine import eval_mode
from genattrib.errors import InvalidArgumentError
from genattrib.models import AttributeOptions, AttributionModel
from genattrib.models.pipeline.contrast_stage import with_contrast_inputs
from genattrib.models.pipeline.stages import add_step_scores, generate, plan, prepare_call
from genattrib.models.results.token_text import decode_tokens
from genattrib.targets import BUILTIN_TARGETS

#: Step-one metrics (Inseq accepts any contrastive step function).
SENSITIVITY_METRICS = tuple(name for name, t in BUILTIN_TARGETS.items() if t.needs_contrast)


def attribute_context(
    model: AttributionModel,
    input_current_text: str,
    *,
    input_context_text: str | None = None,
    input_template: str | None = None,
    output_current_text: str | None = None,
    output_context_text: str | None = None,
    output_template: str | None = None,
    contextless_input_current_text: str = "{current}",
    contextless_output_current_text: str = "{current}",
    chat: bool = False,
    context_sensitivity_metric: str = "kl_divergence",
    context_sensitivity_std_threshold: float | int | None = 1.0,
    context_sensitivity_topk: int | None = None,
    method: str | None = None,
    attributed_fn: str = "contrast_prob_diff",
    method_kwargs: Mapping[str, Any] | None = None,
    seed: int | None = None,
    **generation_kwargs: Any,
) -> ContextAttributionOutput:
    """Which generated tokens depend on the context, and which context tokens drove them (see the
    module docstring; the arguments are Inseq's ``attribute-context`` ones). Templates hold
    ``{current}`` and, to use a context, ``{context}`` (default ``"{context} {current}"`` with a
    context, else ``"{current}"``). Without ``output_current_text`` the output is generated
    (``generation_kwargs``: ``max_new_tokens`` ...). ``method`` defaults to the model's."""
    _check(model, context_sensitivity_metric, attributed_fn, input_current_text)
    in_template = input_template or ("{current}" if input_context_text is None else "{context} {current}")
    out_template = output_template or ("{current}" if output_context_text is None else "{context} {current}")
    for name, template in (("input_template", in_template), ("output_template", out_template)):
        if "{current}" not in template:
            raise InvalidArgumentError(name, f"{template!r} has no {{current}}", "e.g. '{context} {current}'")
    for name, template in (
        ("contextless_input_current_text", contextless_input_current_text),
        ("contextless_output_current_text", contextless_output_current_text),
    ):
        if "{current}" not in template:
            raise InvalidArgumentError(name, f"{template!r} has no {{current}}", "e.g. '{current}'")
    full_text = format_template(in_template, input_current_text, input_context_text)
    contextless_text = contextless_input_current_text.format(current=input_current_text)
    full_prompt, contextless_prompt = prompt_of(full_text, chat), prompt_of(contextless_text, chat)
    tok = model.tokenizer
    seq2seq = sides.is_seq2seq(model)
    # Inseq's decoder_input_output_separator: a space between a text prompt and its output (a target stands alone)
    sep = "" if chat or seq2seq else " "
    with eval_mode(model.model):
        if output_current_text is None:
            prefix = out_template.split("{current}")[0].format(context=output_context_text or "")
            if seq2seq and prefix.strip():
                raise InvalidArgumentError(
                    "output_current_text",
                    "generating after an output context is not supported on encoder-decoder models",
                    "pass output_current_text= (the answer to explain) with output_context_text=",
                )
            ids = sides.generate_ids(model, _with_prefix(full_prompt, prefix), seed, generation_kwargs)
            output_current_text = tok.decode(ids, skip_special_tokens=True).strip()
        output_full = format_template(out_template, output_current_text, output_context_text)
        contextless_output = contextless_output_current_text.format(current=output_current_text)
        # step 1: every token of the contextless output, against the contextual prediction
        cti = _step_scores(
            model, contextless_prompt, sep + contextless_output.lstrip(" "), context_sensitivity_metric,
            full_prompt, sep + output_full.lstrip(" "),
        )  # fmt: skip
        scores, current_ids = cti
        n_prefix = _n_tokens(tok, contextless_output_current_text.split("{current}")[0])
        n_special = sides.trailing_specials(model, current_ids)
        end = len(scores) - n_special
        scores, current_ids = scores[n_prefix:end], current_ids[n_prefix:end]
        threshold = std_threshold(scores, context_sensitivity_std_threshold)
        selected = select_tokens(scores, context_sensitivity_std_threshold, context_sensitivity_topk)
        # step 2: each selected token, attributed to the contexts
        continuation_ids = sides.continuation_ids(model, full_prompt, sep + output_full.lstrip(" "))
        offset = int(continuation_ids.shape[0]) - n_special - len(current_ids)
        in_mask = context_token_mask(tok, full_prompt, input_context_text)
        out_mask = [output_context_text is not None] * offset  # the continuation's tokens before the current output
        cues = []
        for index, score in selected:
            cue = _impute(
                model, full_prompt, contextless_prompt, continuation_ids, offset + index, current_ids[:index],
                attributed_fn, method, method_kwargs, seed, in_mask, out_mask,
            )  # fmt: skip
            cues.append(replace(cue, index=index, score=score, token=decode_tokens(tok, [current_ids[index]])[0]))
    prompt_ids = sides.prompt_ids(model, full_prompt)
    prompt_tokens = decode_tokens(tok, prompt_ids.tolist())
    cont_tokens = decode_tokens(tok, continuation_ids.tolist())
    return ContextAttributionOutput(
        input_context=input_context_text,
        input_context_tokens=[t for t, m in zip(prompt_tokens, in_mask) if m],
        input_current=input_current_text,
        output_context=output_context_text,
        output_context_tokens=[t for t, m in zip(cont_tokens, out_mask) if m],
        output_current=output_current_text,
        output_current_tokens=decode_tokens(tok, current_ids),
        metric=context_sensitivity_metric,
        sensitivity_scores=[float(s) for s in scores],
        threshold=float(threshold),
        cues=cues,
        info={
            "model": model.name,
            "method": method or model.method,
            "attributed_fn": attributed_fn,
            "input_template": in_template,
            "output_template": out_template,
            "std_threshold": context_sensitivity_std_threshold,
            "topk": context_sensitivity_topk,
            "chat": chat,
        },
    )


def _check(model: Any, metric: str, attributed_fn: str, current: str) -> None:
    if not isinstance(model, AttributionModel):
        raise InvalidArgumentError("model", f"expected an AttributionModel, got {type(model).__name__}",
                                   "pass genattrib.load_model(...)")  # fmt: skip
    if metric not in SENSITIVITY_METRICS:
        raise InvalidArgumentError(
            "context_sensitivity_metric", f"{metric!r} is not a contrastive step function",
            f"use one of {', '.join(SENSITIVITY_METRICS)} (kl_divergence or pcxmi, as PECoRe)",
        )  # fmt: skip
    if attributed_fn not in model.list_targets():
        raise InvalidArgumentError("attributed_fn", f"unknown target {attributed_fn!r}",
                                   f"use one of {', '.join(model.list_targets())}")  # fmt: skip
    if not isinstance(current, str) or not current.strip():
        raise InvalidArgumentError("input_current_text", "empty", "pass the question or text the model answers")


def _with_prefix(prompt: Any, prefix: str) -> Any:
    return prompt + prefix if isinstance(prompt, str) and prefix.strip() else prompt


def _n_tokens(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"]) if text.strip() else 0


def _step_scores(
    model: AttributionModel, prompt: Any, continuation: str, metric: str, contrast_prompt: Any, contrast_cont: str
) -> tuple[list[float], list[int]]:
    """(``metric`` at every step of ``continuation`` after ``prompt`` against the contrast input, its token ids),
    teacher-forced, without attributing anything."""
    options = AttributeOptions(
        method="occlusion",
        step_scores=[metric],
        contrast_prompt=contrast_prompt,
        contrast_continuation=contrast_cont,
    )
    call = prepare_call(model.parts, prompt, continuation, None, options)
    traces = generate(call)
    request, contrast = with_contrast_inputs(call.forward, call.request, traces)
    call = replace(call, request=request)
    add_step_scores(call, traces, plan(call, traces, contrast))
    return traces[0].step_scores[metric].tolist(), traces[0].generated_ids.tolist()


def _impute(
    model: AttributionModel,
    prompt: Any,
    contextless_prompt: Any,
    continuation_ids: torch.Tensor,
    step: int,
    contextless_prefix: list[int],
    attributed_fn: str,
    method: str | None,
    method_kwargs: Mapping[str, Any] | None,
    seed: int | None,
    in_mask: list[bool],
    out_mask: list[bool],
) -> ContextCue:
    """Step two for the token at ``step`` of the continuation: attribute it, contrasted with the
    token the model predicts there without the context (greedy), and keep the context's scores."""
    ids = continuation_ids[: step + 1]
    kwargs: dict[str, Any] = {}
    contrast_token = None
    if BUILTIN_TARGETS.get(attributed_fn) is not None and BUILTIN_TARGETS[attributed_fn].needs_contrast:
        next_id = sides.next_token(model, contextless_prompt, contextless_prefix)
        contrast_token = decode_tokens(model.tokenizer, [next_id])[0]
        contextless = torch.tensor([*contextless_prefix, next_id], dtype=torch.long)
        same = next_id == int(ids[-1])
        kwargs = dict(contrast_prompt=contextless_prompt, contrast_continuation=contextless,
                      contrast_force_inputs=same or attributed_fn == "kl_divergence")  # fmt: skip
    if sides.is_seq2seq(model) and any(out_mask):  # the output context is in the target prefix
        kwargs["attribute_prefix"] = True
    out = model.attribute(
        prompt, ids, method=method, attributed_fn=attributed_fn, attr_pos_start=step, attr_pos_end=step + 1,
        method_kwargs=method_kwargs, seed=seed, **kwargs,
    )  # fmt: skip
    seq = out.sequences[0]
    row = seq.scores[0].float()
    n_prompt = seq.prompt_length
    in_scores = [float(v) for v, m in zip(row[:n_prompt].tolist(), in_mask) if m]
    out_scores = [float(v) for v, m in zip(row[n_prompt : n_prompt + step].tolist(), out_mask) if m]
    return ContextCue(0, "", 0.0, contrast_token, in_scores, out_scores if any(out_mask) else None)
