"""``genattrib.benchmark``: compare attribution methods on one model with faithfulness metrics.

Sequence-level sets (``wikitext``, ``tellmewhy``) follow ReAGent's protocol: the model writes
``max_new_tokens`` tokens greedily once, every method explains those same tokens, and every
``every``-th step is evaluated. Token-level sets (``longra``) force the known target token and
also report how much attribution mass falls on the distractor.

Example:
    >>> res = genattrib.benchmark(model, methods=["saliency", "input_x_gradient"], dataset="wikitext",
    ...                           metrics=["comprehensiveness", "sufficiency"], max_new_tokens=2, max_examples=2)
    >>> res.show()
    LlamaForCausalLM · wikitext · 2 examples · wall ...
    ...
    >>> res.to_pandas()                                       # needs pandas  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from genattrib.errors import InvalidArgumentError
from genattrib.evaluation.benchmark_result import BenchmarkResult, MethodRun
from genattrib.evaluation.completeness import completeness
from genattrib.evaluation.datasets import Example, load_dataset
from genattrib.evaluation.evaluate import evaluate_steps, resolve_metrics
from genattrib.evaluation.on_dataset import attribute_on_dataset, is_main_process, shared_targets
from genattrib.evaluation.split import evaluate_split
from genattrib.faithfulness.bootstrap import summarize
from genattrib.faithfulness.steps import EvalSteps, collect_steps
from genattrib.machine import machine_record
from genattrib.methods import method_class
from genattrib.models import AttributionModel
from genattrib.output import FeatureAttributionOutput
from genattrib.seeding import DEFAULT_SEED
from genattrib.validation import check_number, check_positive_int

RANDOM = "random"


def random_steps(steps: EvalSteps, seed: int) -> EvalSteps:
    """The same steps with seeded uniform random scores (the "random" reference row)."""
    gen = torch.Generator().manual_seed(int(seed))
    scores = [torch.rand(s.shape, generator=gen) for s in steps.scores]
    return EvalSteps(steps.prefixes, scores, steps.special, steps.target_ids, steps.example, steps.step)


def distractor_mass(out: FeatureAttributionOutput, examples: Sequence[Example]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per example: share of |attribution| of the first explained step on the distractor's tokens,
    and the distractor's share of the movable prompt tokens (what a uniform attribution gives)."""
    mass, share = [], []
    for seq, example in zip(out.sequences, examples):
        start, end = example.distractor
        p = seq.target_positions[0]
        inside = torch.tensor([s < end and e > start for s, e in seq.offsets[:p]])
        movable = ~seq.held_fixed[:p]
        scores = seq.scores[0, :p].abs().nan_to_num(0.0) * movable
        total = scores.sum()
        mass.append(scores[inside].sum() / total if total > 0 else torch.tensor(float("nan")))
        share.append((inside & movable).sum() / movable.sum().clamp_min(1))
    return torch.stack(mass).float(), torch.stack(share).float()


def _check(model: Any, methods: Sequence[str], max_new_tokens: int, every: int) -> list[str]:
    if not isinstance(model, AttributionModel):
        raise InvalidArgumentError(
            "model", f"expected an AttributionModel, got {type(model).__name__}", "pass genattrib.load_model(...)"
        )
    names = [methods] if isinstance(methods, str) else list(methods)
    if not names:
        raise InvalidArgumentError(
            "methods", "no method given", "pass e.g. methods=['saliency', 'integrated_gradients']"
        )
    for name in names:
        method_class(name)
    for arg, value in (("max_new_tokens", max_new_tokens), ("every", every)):
        check_positive_int(arg, value, f"{arg}=2")
    return list(dict.fromkeys(names))


def benchmark(
    model: AttributionModel,
    methods: str | Sequence[str],
    dataset: str | Sequence[str] = "wikitext",
    metrics: str | Sequence[str] | None = None,
    *,
    max_new_tokens: int = 10,
    every: int = 2,
    max_examples: int | None = None,
    method_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    seed: int = DEFAULT_SEED,
    k: float | int = 20.0,
    include_random: bool = True,
    n_bootstrap: int = 1000,
    show_progress: bool | None = None,
    checkpoint: str | Path | None = None,
    on_method_done: Callable[[MethodRun], None] | None = None,
    out_dir: str | Path | None = None,
    batch_size: int = 8,
    time_budget: float | None = None,
    on_method_start: Callable[[str, int, int], None] | None = None,
) -> BenchmarkResult:
    """Attribute ``dataset`` with every method in ``methods`` and score each with ``metrics``.

    ``method_kwargs`` maps a method name to its parameters (e.g. ``{"integrated_gradients":
    {"n_steps": 16}}``). A ``random`` row (seeded uniform scores on the same steps) is added when
    ``include_random``. Returns a :class:`BenchmarkResult` (``show()``, ``to_pandas()``,
    ``save_json()``, ``save_html()``). With ``checkpoint``, the JSON of the methods finished so
    far is rewritten after each method (long runs keep their partial results);
    ``on_method_start(method, i, n)`` before the i-th of n methods (1-based) and
    ``on_method_done(run)`` after each method are for progress reports (``genattrib evaluate``
    prints both on stderr).

    ``time_budget`` (seconds) is given to every method with an anytime loop, i.e. a
    ``time_budget`` parameter (ReAGent: seconds of probing per batch of targets; probes still
    running then are cut off and counted in its ``reagent_unstopped`` step score), unless
    ``method_kwargs`` sets it; other methods are not limited.

    With ``out_dir``, the run goes through the dataset runner (:mod:`genattrib.evaluation.on_dataset`):
    each method's attributions are written by ``attribute_dataset`` to ``out_dir/attributions/<method>``
    (``batch_size`` records a batch) and the metrics to ``out_dir/evaluation/<method>``, both split
    over the processes of ``accelerate launch`` / ``torchrun`` and resumed by a rerun.
    """
    names = _check(model, methods, max_new_tokens, every)
    metric_names = resolve_metrics(metrics)
    examples = load_dataset(dataset, max_examples)
    kwargs = {name: dict(params) for name, params in (method_kwargs or {}).items()}
    unknown = sorted(set(kwargs) - set(names))
    if unknown:
        raise InvalidArgumentError(
            "method_kwargs",
            f"parameters given for {unknown[0]!r}, which is not among methods",
            f"use keys from {names}",
        )
    if time_budget is not None:
        check_number("time_budget", time_budget, "time_budget=60", low=0, strict=True, what="seconds")
        for name in names:
            if "time_budget" in {f.name for f in fields(method_class(name).Params)}:
                kwargs.setdefault(name, {}).setdefault("time_budget", time_budget)
    token_level = all(e.target is not None for e in examples)
    prompts = [e.prompt for e in examples]
    t0 = time.perf_counter()
    if token_level:
        targets: list[Any] = [e.target for e in examples]
        evaluate_every, generate_seconds = 1, 0.0
    else:  # the model writes once; every method explains the same tokens
        t = time.perf_counter()
        if out_dir is None:
            targets = model.generate(prompts, max_new_tokens=max_new_tokens, do_sample=False)
        else:
            targets = shared_targets(model, prompts, max_new_tokens, Path(out_dir))
        keep = [i for i, t in enumerate(targets) if t.numel()]
        if not keep:
            raise InvalidArgumentError(
                "dataset", "the model wrote nothing (EOS first) for every prompt", "use other prompts"
            )
        examples, prompts, targets = [examples[i] for i in keep], [prompts[i] for i in keep], [targets[i] for i in keep]
        evaluate_every, generate_seconds = every, time.perf_counter() - t
    info = {
        "model": model.name,
        "dataset": dataset if isinstance(dataset, str) else "custom",
        "examples": len(examples),
        "token_level": token_level,
        "max_new_tokens": None if token_level else max_new_tokens,
        "every": evaluate_every,
        "metrics": metric_names,
        "k": k,
        "seed": seed,
        "generate_seconds": generate_seconds,
        "device": model.devices,
        "dtype": str(model.dtype).replace("torch.", ""),
        "machine": machine_record(),  # the CPU and kernels behind the numbers' last digits
    }
    runs: list[MethodRun] = []
    reference_steps = None
    for number, name in enumerate(names, 1):
        if on_method_start is not None and is_main_process():
            on_method_start(name, number, len(names))
        t = time.perf_counter()
        if out_dir is None:
            out = model.attribute(
                prompts,
                continuation=targets,
                method=name,
                seed=seed,
                show_progress=show_progress,
                **dict(kwargs.get(name, {})),
            )
            kept = examples
        else:
            out, kept = attribute_on_dataset(
                model, examples, targets, name, Path(out_dir), seed, batch_size, show_progress, kwargs.get(name, {})
            )
        attribute_seconds = time.perf_counter() - t
        steps = collect_steps(out.steps(0, 1) if token_level else out, evaluate_every)
        reference_steps = steps
        if out_dir is None:
            result = evaluate_steps(model, steps, metric_names, k=k, seed=seed, n_bootstrap=n_bootstrap)
        else:
            folder = Path(out_dir) / "evaluation" / name
            result = evaluate_split(model, steps, metric_names, folder=folder, k=k, seed=seed, n_bootstrap=n_bootstrap)
        extra = {}
        if token_level:
            mass, share = distractor_mass(out, kept)
            extra["distractor_mass"] = summarize(mass, None, "mean", n_bootstrap, seed)
            extra["distractor_share"] = summarize(share, None, "mean", n_bootstrap, seed)
        runs.append(
            MethodRun(
                name,
                result,
                attribute_seconds,
                {**out.provenance.method_params, "attributed_fn": out.provenance.attributed_fn},
                extra,
                tokens=int(sum(s.num_steps for s in out.sequences)),
                rows=out.provenance.work.get("rows", 0),
                completeness=completeness(out),
            )
        )
        if checkpoint is not None and is_main_process():
            BenchmarkResult(list(runs), {**info, "partial": True, "wall_seconds": time.perf_counter() - t0}).save_json(
                checkpoint
            )
        if on_method_done is not None and is_main_process():
            on_method_done(runs[-1])
    if include_random and reference_steps is not None:
        reference = random_steps(reference_steps, seed)
        if out_dir is None:
            result = evaluate_steps(model, reference, metric_names, k=k, seed=seed, n_bootstrap=n_bootstrap)
        else:
            folder = Path(out_dir) / "evaluation" / RANDOM
            result = evaluate_split(
                model, reference, metric_names, folder=folder, k=k, seed=seed, n_bootstrap=n_bootstrap
            )
        runs.append(MethodRun(RANDOM, result, 0.0, {"seed": seed}, {}, tokens=0, rows=0))
    info["wall_seconds"] = time.perf_counter() - t0
    return BenchmarkResult(runs, info)
