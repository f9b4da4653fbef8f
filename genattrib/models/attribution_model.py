"""``AttributionModel``: a Hugging Face causal LM + tokenizer that can explain what it writes.

Example:
    >>> model = genattrib.load_model()                                   # doctest: +SKIP
    >>> out = model.attribute("The capital of France is", max_new_tokens=8)
    >>> out.show()
    Sequence 0 ...
    ...
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from transformers import GenerationConfig

from genattrib.engine import SequenceJob, run_attribution, teacher_forced_step_scores
from genattrib.errors import InvalidArgumentError
from genattrib.generation import GenerationTrace, generate_traces
from genattrib.methods import Attributor, get_method, list_methods, method_class
from genattrib.engine.forward import ModelForward, eval_mode
from genattrib.methods.reagent import with_params, with_vocabulary
from genattrib.methods.vocabulary import Vocabulary
from genattrib.models import inputs as inp
from genattrib.models.arguments import (
    build_generation_config,
    resolve_baseline,
    resolve_step_scores,
    split_kwargs,
)
from genattrib.models.tokens import decode_tokens
from genattrib.output import FeatureAttributionOutput, Provenance, SequenceAttribution
from genattrib.output.provenance import library_versions
from genattrib.targets import TargetFunction, list_targets, resolve_target

DEFAULT_SEED = 42


class AttributionModel:
    """Wraps ``model`` and ``tokenizer`` (left unchanged) with a default attribution method."""

    def __init__(
        self, model: nn.Module, tokenizer: Any, method: str = "saliency", *, name: str | None = None,
        revision: str | None = None, max_rows: int | None = None, device_map: Any = None,
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
        return sorted({str(p.device) for p in self.model.parameters()})

    def list_methods(self) -> list[str]:
        return list_methods()

    def list_targets(self) -> list[str]:
        return list_targets(self._targets)

    def register_target(self, name: str, fn: Callable, *, differentiable: bool = True, needs_contrast: bool = False, description: str = "") -> None:
        """Add a target function usable by name on this model (as attributed_fn or step score)."""
        self._targets[name] = TargetFunction(name, fn, description, differentiable, needs_contrast)

    # --- the main call ---------------------------------------------------------------------
    def attribute(
        self,
        inputs: str | Sequence[Any],
        target: str | Sequence[Any] | torch.Tensor | None = None,
        *,
        method: str | Attributor | None = None,
        attributed_fn: str | Callable = "logprob",
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
        max_rows: int | None = None,
        show_progress: bool | None = None,
        method_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> FeatureAttributionOutput:
        """Generate (or force) a continuation for each prompt and attribute every generated token.

        ``kwargs`` go to the method when it has a parameter of that name (``n_steps``,
        ``baseline`` ...) and to generation otherwise (``max_new_tokens``, ``do_sample`` ...).
        ``inputs`` is a prompt, a list of prompts, a chat (list of ``{"role", "content"}``) or a
        list of chats; ``target`` a forced continuation per prompt (text, or token ids used as
        they are). ``attr_pos_start``/``attr_pos_end`` select generated steps (slice semantics, 0 = first
        generated token). Scores at or after each target position are NaN.
        """
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        # ---- validate everything before heavy work
        name = method if method is not None else self.method
        cls = type(name) if isinstance(name, Attributor) else method_class(name)
        method_params, gen_kwargs = split_kwargs(kwargs, cls.param_names())
        method_params.update(method_kwargs or {})
        attributor = name if isinstance(name, Attributor) else get_method(name, **method_params)
        if "vocabulary" in cls.param_names():  # methods that sample tokens learn the vocabulary here
            attributor = with_vocabulary(attributor, Vocabulary.from_tokenizer(self.tokenizer))
        if "baseline_id" in cls.param_names() and getattr(attributor.params, "baseline_id", 0) is None:
            # the token metric-based selection (RPI's best:<metric>) puts in place of removed tokens
            attributor = with_params(attributor, baseline_id=resolve_baseline(None, self.tokenizer, 1).token_id)
        fn = resolve_target(attributed_fn, self._targets)
        step_targets = resolve_step_scores(step_scores, self._targets)
        self._check_batch_size(batch_size)
        prompts = inp.normalize_prompts(inputs, chat)
        forced = inp.normalize_targets(target, len(prompts), "target")
        contrasts = inp.normalize_targets(contrast_target, len(prompts), "contrast_target")
        needs_contrast = fn.needs_contrast or any(t.needs_contrast for t in step_targets.values())
        if needs_contrast and contrasts is None:
            raise InvalidArgumentError("contrast_target", "a contrastive target was asked for but no contrast given", "pass contrast_target='an alternative continuation'")
        prompt_ids = [inp.tokenize_prompt(self.tokenizer, p) for p in prompts]
        forced_ids = None if forced is None else [inp.tokenize_continuation(self.tokenizer, p, t) for p, t in zip(prompt_ids, forced)]
        gen_config = build_generation_config(self.model, self.tokenizer, generation_config, gen_kwargs, cls.param_names())
        self._check_lengths(prompt_ids, forced_ids, gen_config)
        forward = ModelForward(self.model, max_rows=max_rows or self.max_rows)
        attributor.check_model(forward, fn)
        baseline = None
        if attributor.uses_baseline:
            baseline = resolve_baseline(getattr(attributor.params, "baseline", None), self.tokenizer, forward.hidden_size)
        run_seed = DEFAULT_SEED if seed is None else int(seed)
        timings["validate"] = time.perf_counter() - t0

        with eval_mode(self.model):
            # ---- generation (or forced continuation)
            t1 = time.perf_counter()
            if forced_ids is None:
                generated_targets = {} if needs_contrast else step_targets
                traces = generate_traces(
                    self.model, prompt_ids, generation_config=gen_config, step_targets=generated_targets,
                    batch_size=batch_size, seed=seed,
                )
            else:
                traces = [GenerationTrace(p, f, forced=True) for p, f in zip(prompt_ids, forced_ids)]
            timings["generate"] = time.perf_counter() - t1
            jobs = self._jobs(traces, contrasts, attr_pos_start, attr_pos_end, attribute_special_tokens)
            # ---- step scores computed teacher-forced when generation did not record them
            t2 = time.perf_counter()
            if step_targets and (forced_ids is not None or needs_contrast):
                for trace, scores in zip(traces, teacher_forced_step_scores(forward, jobs, step_targets)):
                    trace.step_scores = scores
            timings["step_scores"] = time.perf_counter() - t2
            # ---- attribution
            t3 = time.perf_counter()
            results = run_attribution(forward, attributor, fn, jobs, baseline, run_seed, keep_granular, show_progress)
            timings["attribute"] = time.perf_counter() - t3

        sequences = []
        for prompt, trace, job, res in zip(prompts, traces, jobs, results):
            ids = trace.input_ids
            tokens = decode_tokens(self.tokenizer, ids.tolist())
            roles = None if isinstance(prompt, str) else inp.chat_token_roles(prompt, tokens, trace.prompt_length)
            steps = {k: v[job.step_start : job.step_stop].clone() for k, v in trace.step_scores.items()}
            steps.update(res.step_scores)
            sequences.append(
                SequenceAttribution(
                    input_ids=ids, tokens=tokens, prompt_length=trace.prompt_length, token_roles=roles,
                    scores=res.scores, step_scores=steps, special_mask=job.special_mask.clone(),
                    granular_scores=res.granular_scores, step_start=job.step_start,
                    generated_text=self.tokenizer.decode(trace.generated_ids.tolist(), skip_special_tokens=True),
                )
            )
        timings["total"] = time.perf_counter() - t0
        provenance = self._provenance(attributor, fn, step_targets, gen_config, forced_ids is not None, run_seed, baseline, timings)
        provenance.work = {"rows": forward.rows_run, "grad_rows": forward.grad_rows_run}
        return FeatureAttributionOutput(sequences, provenance)

    def generate(
        self, inputs: str | Sequence[Any], *, chat: bool = False, batch_size: int | None = None, seed: int | None = None,
        generation_config: GenerationConfig | None = None, **kwargs: Any,
    ) -> list[torch.Tensor]:
        """The token ids the model writes after each prompt (EOS trimmed), without attributing:
        what :meth:`attribute` would explain with the same settings; pass them back as ``target``.

        Example:
            >>> ids = model.generate(["The capital of France is"], max_new_tokens=4)
            >>> out = model.attribute(["The capital of France is"], target=ids, method="occlusion")
            >>> out.sequences[0].input_ids[-4:].tolist() == ids[0].tolist()
            True
        """
        self._check_batch_size(batch_size)
        prompt_ids = [inp.tokenize_prompt(self.tokenizer, p) for p in inp.normalize_prompts(inputs, chat)]
        config = build_generation_config(self.model, self.tokenizer, generation_config, kwargs, [])
        self._check_lengths(prompt_ids, None, config)
        with eval_mode(self.model):
            traces = generate_traces(self.model, prompt_ids, generation_config=config, step_targets={},
                                     batch_size=batch_size, seed=seed)
        return [trace.generated_ids.clone() for trace in traces]

    # --- helpers -----------------------------------------------------------------------------
    @staticmethod
    def _check_batch_size(batch_size: object) -> None:
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
            raise InvalidArgumentError("batch_size", f"must be a positive int, got {batch_size!r}", "pass e.g. batch_size=8")

    def _check_lengths(self, prompt_ids: list[torch.Tensor], forced_ids: list[torch.Tensor] | None, config: GenerationConfig) -> None:
        window = inp.context_window(self.model.config)
        if window is None:
            return
        for i, ids in enumerate(prompt_ids):
            extra = int(forced_ids[i].shape[0]) if forced_ids is not None else (config.max_new_tokens or 0)
            total = int(ids.shape[0]) + extra
            if int(ids.shape[0]) >= window or total > window:
                raise InvalidArgumentError(
                    "inputs", f"prompt {i} has {int(ids.shape[0])} tokens and needs room for {extra} more, "
                    f"but the model's context window is {window} tokens",
                    "shorten the prompt, or lower max_new_tokens / the forced target",
                )

    def _jobs(
        self, traces: list[GenerationTrace], contrasts: list[str] | None, start: int | None, stop: int | None, keep_special: bool
    ) -> list[SequenceJob]:
        special = torch.tensor(sorted(set(getattr(self.tokenizer, "all_special_ids", []) or [])), dtype=torch.long)
        jobs = []
        for i, trace in enumerate(traces):
            n = int(trace.generated_ids.shape[0])
            steps = range(n)[slice(start, stop)]
            if n and len(steps) == 0:
                raise InvalidArgumentError("attr_pos_start", f"attr_pos_start={start}, attr_pos_end={stop} select no step of {n} generated tokens", f"use indices in [0, {n}) or None")
            ids = trace.input_ids
            mask = torch.zeros_like(ids, dtype=torch.bool) if keep_special else torch.isin(ids, special)
            contrast_ids = None
            if contrasts is not None:
                contrast_ids = inp.tokenize_continuation(self.tokenizer, trace.prompt_ids, contrasts[i], "contrast_target")
                if contrast_ids.shape[0] == 1 and n > 1:
                    contrast_ids = contrast_ids.expand(n).clone()
                if contrast_ids.shape[0] != n:
                    raise InvalidArgumentError("contrast_target", f"{contrast_ids.shape[0]} contrast tokens for {n} generated tokens", "pass a single-token contrast or one with as many tokens as the continuation")
            jobs.append(SequenceJob(ids, trace.prompt_length, steps.start if n else 0, steps.stop if n else 0, mask, contrast_ids))
        return jobs

    def _provenance(self, attributor: Attributor, fn: TargetFunction, step_targets: dict[str, TargetFunction], config: GenerationConfig,
                    forced: bool, seed: int, baseline: Any, timings: dict[str, float]) -> Provenance:
        params = attributor.params.to_dict()
        if baseline is not None:
            params["baseline"] = baseline.describe()
        device_map = getattr(self.model, "hf_device_map", None) or self.device_map
        if device_map is not None and not isinstance(device_map, dict):
            device_map = {"": device_map}
        return Provenance(
            model_name=self.name, model_revision=self.revision, model_class=type(self.model).__name__,
            dtype=str(self.dtype).replace("torch.", ""), devices=self.devices,
            device_map={str(k): str(v) for k, v in device_map.items()} if device_map else None,
            method=attributor.name, method_params=params, attributed_fn=fn.name,
            step_scores=sorted(step_targets), generation_config={} if forced else config.to_diff_dict(),
            forced_target=forced, seed=seed, versions=library_versions(), timings=timings,
        )
