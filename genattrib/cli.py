"""Command line: ``genattrib attribute | attribute-context | attribute-dataset | show | evaluate | methods | targets``.

Example::

    $ genattrib attribute "The capital of France is" --max-new-tokens 8 --save paris.json
    $ genattrib attribute "Why is the sky blue?" --chat --method integrated_gradients --param n_steps=32
    $ genattrib attribute "Tell me a story." --max-new-tokens 512 --dry-run
    $ genattrib attribute "Tell me a story." --max-new-tokens 512 --top-k-scores 20 --stream-to story/
    $ genattrib attribute "Tell me a story." --max-new-tokens 64 --do-sample --temperature 0.7 --top-p 0.9 --seed 1
    $ genattrib attribute-context --input-current-text "Where does Anna live?" --input-context-text "Anna is in Lisbon."
    $ genattrib attribute-dataset prompts.jsonl --out runs/prompts --max-new-tokens 32
    $ genattrib show paris.json --step 0
    $ genattrib show paris.json --html paris.html
    $ genattrib evaluate --methods saliency,integrated_gradients,reagent --dataset wikitext
    $ genattrib methods
    $ genattrib --version

Errors genattrib raises on purpose (:class:`~genattrib.errors.GenattribError`) print one red line
on stderr and exit with code 2; bad command lines also exit with 2 (argparse). Ctrl-C prints one
line (what is saved, the command that resumes) and exits with 130.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.text import Text

import genattrib
from genattrib.cli_args import (
    PARAM_HELP,
    VersionAction,
    add_sampling_options,
    parse_max_memory,
    parse_param,
    parse_value,
    sampling_config,
    sampling_options,
    split_list,
)
from genattrib.cli_context import add_attribute_context, run_attribute_context
from genattrib.cli_dataset import add_attribute_dataset, run_attribute_dataset
from genattrib.cli_evaluate import add_evaluate, run_evaluate
from genattrib.cli_interrupt import interrupt_line
from genattrib.cli_listing import run_methods, run_targets
from genattrib.errors import GenattribError
from genattrib.models.loading.loader import DTYPE_NAMES
from genattrib.models.options.explain_units import UNIT_NAMES
from genattrib.models.options.sources import SOURCE_NAMES
from genattrib.output.attribution import FeatureAttributionOutput
from genattrib.output.serialization import check_save_path

__all__ = ["build_parser", "main", "parse_param", "parse_value"]

ERROR_EXIT = 2


class _UsageError(Exception):
    """A command line that parses but makes no sense (reported like an argparse error)."""


def _add_display_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("display")
    group.add_argument("--step", type=int, default=None, help="show one explained step as coloured source text")
    group.add_argument("--view", choices=("auto", "matrix", "compact"), default="auto", help="layout (default: auto)")
    group.add_argument("--width", type=int, default=None, help="maximum width in columns (default: terminal)")
    group.add_argument("--digits", type=int, default=2, help="decimals per score (default: 2)")
    group.add_argument("--no-step-scores", action="store_true", help="hide the step-score rows")
    group.add_argument(
        "--scale",
        choices=("step", "global"),
        default="step",
        help="colour each step against its own largest |score| (default) or the sequence's (also for --html)",
    )
    group.add_argument(
        "--include-special-tokens",
        action="store_true",
        help="rank special and chat-template tokens in top lists, summaries and colour scales (also for --html)",
    )


def _add_attribute(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("attribute", help="generate (or force) a continuation and attribute it")
    p.add_argument("prompt", metavar="PROMPT", help="the prompt text (the user message with --chat)")
    p.add_argument(
        "--continuation",
        "--target",
        dest="continuation",
        default=None,
        metavar="TEXT",
        help="explain this continuation instead of generating one (--target is an alias)",
    )
    p.add_argument(
        "--contrast-target", default=None, metavar="TEXT", help="alternative continuation for contrastive functions"
    )
    p.add_argument(
        "--model",
        default=None,
        metavar="ID_OR_PATH",
        help="Hugging Face id or local folder (default: embedded SmolLM2-135M-Instruct)",
    )
    p.add_argument("--revision", default=None, help="model revision (branch, tag or commit)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow custom model code from the hub")
    p.add_argument("--method", default=None, metavar="NAME", help="attribution method (see `genattrib methods`)")
    p.add_argument("--attributed-fn", default=None, metavar="NAME", help="function explained (see `genattrib targets`)")
    p.add_argument(
        "--step-scores", type=split_list, default=None, metavar="A,B", help="per-step scores, e.g. probability,entropy"
    )
    p.add_argument("--max-new-tokens", type=int, default=None, metavar="N", help="tokens to generate")
    p.add_argument(
        "--batch-size", type=int, default=None, metavar="N", help="prompts per generation and attribution batch"
    )
    p.add_argument(
        "--max-rows", type=int, default=None, metavar="N", help="model rows per call (default: sized from free memory)"
    )
    p.add_argument("--dtype", choices=DTYPE_NAMES, default=None, help="model dtype")
    p.add_argument(
        "--device-map",
        type=parse_value,
        default=None,
        metavar="MAP",
        help='accelerate device map: auto, cpu, cuda:0, or JSON such as \'{"model.layers.0": 0, "lm_head": "disk"}\'',
    )
    p.add_argument(
        "--max-memory",
        type=parse_max_memory,
        default=None,
        metavar="DEV=SIZE,...",
        help="with --device-map auto: memory per device for weights, e.g. 0=70GiB,1=70GiB,cpu=200GiB",
    )
    p.add_argument(
        "--offload-folder", default=None, metavar="DIR", help='folder for the weights the device map puts on "disk"'
    )
    p.add_argument("--seed", type=int, default=None, help="seed for sampling and randomised methods")
    p.add_argument("--chat", action="store_true", help="treat PROMPT as a user message and apply the chat template")
    p.add_argument(
        "--explain",
        choices=UNIT_NAMES,
        default=None,
        help="what each row explains: generated tokens (default) or units of the generated text",
    )
    p.add_argument(
        "--sources",
        choices=SOURCE_NAMES,
        default=None,
        help="group the prompt into source units; occlusion, lime and context_ablation ablate whole units",
    )
    p.add_argument(
        "--sources-include-generated",
        action="store_true",
        help="with --sources, group the text generated before each target too",
    )
    p.add_argument(
        "--param",
        type=parse_param,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=PARAM_HELP,
    )
    add_sampling_options(p)
    storage = p.add_argument_group("storage and cost")
    storage.add_argument(
        "--top-k-scores",
        type=int,
        default=None,
        metavar="K",
        help="keep the K largest |scores| of each row, plus a residual (attribute(top_k_scores=K))",
    )
    storage.add_argument(
        "--stream-to",
        default=None,
        metavar="DIR",
        help="write each finished batch of rows to DIR as it completes; the same command again resumes",
    )
    storage.add_argument(
        "--granular-budget-mb",
        type=float,
        default=None,
        metavar="MB",
        help="most memory granular (per hidden unit) scores may take (default: 256)",
    )
    storage.add_argument(
        "--dry-run",
        action="store_true",
        help="print the estimated rows, FLOPs, peak memory and time, and exit without attributing",
    )
    p.add_argument("--save", default=None, metavar="PATH", help="save the result (.json or .safetensors)")
    p.add_argument("--html", default=None, metavar="PATH", help="also write a self-contained HTML page (opens offline)")
    p.add_argument("--no-show", action="store_true", help="do not print the heatmap")
    _add_display_options(p)


def build_parser() -> argparse.ArgumentParser:
    """The ``genattrib`` argument parser (sub-commands attribute, attribute-dataset, show, evaluate, methods,
    targets)."""
    parser = argparse.ArgumentParser(prog="genattrib", description="Explain what a generative language model wrote.")
    parser.add_argument("--version", action=VersionAction)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_attribute(sub)
    add_attribute_context(sub)
    add_attribute_dataset(sub)
    show = sub.add_parser("show", help="show a result saved with --save / FeatureAttributionOutput.save")
    show.add_argument("path", metavar="PATH", help="a .json or .safetensors result, or a --stream-to folder")
    show.add_argument(
        "--html",
        default=None,
        metavar="PAGE",
        help="write a self-contained HTML page (opens offline) instead of printing",
    )
    _add_display_options(show)
    add_evaluate(sub)
    sub.add_parser("methods", help="list attribution methods")
    sub.add_parser("targets", help="list attributed functions and step scores")
    return parser


def _show(out: Any, args: argparse.Namespace, console: Console) -> None:
    out.show(
        console=console,
        step=args.step,
        view=args.view,
        step_scores=not args.no_step_scores,
        max_width=args.width,
        digits=args.digits,
        scale=args.scale,
        include_special_tokens=args.include_special_tokens,
    )


def _given(**kwargs: Any) -> dict[str, Any]:
    """Only the options the user set, so library defaults stay in one place."""
    return {k: v for k, v in kwargs.items() if v is not None and v is not False}


def _run_attribute(args: argparse.Namespace, console: Console) -> int:
    params = dict(args.param)
    if len(params) != len(args.param):
        keys = [key for key, _ in args.param]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        raise _UsageError(f"--param given more than once for: {', '.join(dup)}")
    try:
        sampling = sampling_options(args)
    except argparse.ArgumentTypeError as exc:
        raise _UsageError(str(exc)) from None
    if args.sources_include_generated and args.sources is None:
        raise _UsageError("--sources-include-generated groups generated text into --sources units: add --sources NAME")
    dtype = None
    if args.dtype is not None:
        dtype = getattr(torch, args.dtype)
    load_options = _given(
        method=args.method,
        dtype=dtype,
        device_map=args.device_map,
        max_memory=args.max_memory,
        offload_folder=args.offload_folder,
        revision=args.revision,
        trust_remote_code=args.trust_remote_code,
    )
    inputs: Any = [{"role": "user", "content": args.prompt}] if args.chat else args.prompt
    options = _given(
        attributed_fn=args.attributed_fn,
        step_scores=args.step_scores,
        contrast_target=args.contrast_target,
        batch_size=args.batch_size,
        seed=args.seed,
        max_rows=args.max_rows,
        chat=args.chat,
        max_new_tokens=args.max_new_tokens,
        explain=args.explain,
        sources=args.sources,
        sources_include_generated=args.sources_include_generated,
        top_k_scores=args.top_k_scores,
        stream_to=args.stream_to,
        granular_budget_mb=args.granular_budget_mb,
    )
    reserved = {"continuation", "target", "inputs", "top_k", "top_k_scores", "generation_config"}
    clash = sorted(set(params) & (set(options) | reserved))
    clash += sorted(set(params) & set(sampling))
    if clash:
        raise _UsageError(
            f"--param {', '.join(clash)} clashes with an option; use the option instead "
            "(--top-k-scores keeps the K largest scores, --top-k is sampling's top-k)"
        )
    _check_outputs(args)  # a bad --save/--html path is found now, not after the whole run
    model = genattrib.load_model(args.model, **load_options)
    if sampling:  # as a generation config, on top of the model's own
        options["generation_config"] = sampling_config(model, sampling)
    if args.dry_run:
        console.print(Text(str(model.estimate(inputs, args.continuation, **options, **params))))
        return 0
    out = model.attribute(inputs, args.continuation, **options, **params)
    if not args.no_show:
        _show(out, args, console)
    if args.save:
        path = out.save(args.save)
        console.print(Text.assemble("saved to ", (str(path), "bold")))
    if args.html:
        _write_html(out, args, console)
    return 0


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse a ``--save``/``--html`` path that could not be written, before the model loads."""
    if args.html and Path(args.html).suffix.lower() not in (".html", ".htm"):
        raise _UsageError(f"--html {args.html}: end the file name in .html")
    for option, path in (("--save", args.save), ("--html", args.html and Path(args.html).with_suffix(".json"))):
        if path:
            try:
                check_save_path(path)  # for --html: the same folder checks, on a .json stand-in
            except GenattribError as exc:
                raise _UsageError(f"{option}: {' '.join(str(exc).split())}") from exc


def _write_html(out: Any, args: argparse.Namespace, console: Console) -> None:
    written = out.save_html(args.html, scale=args.scale, include_special_tokens=args.include_special_tokens)
    size = written.stat().st_size / 1024
    console.print(Text.assemble("wrote HTML page ", (str(written), "bold"), f" ({size:,.0f} KiB)"))


def _run_show(args: argparse.Namespace, console: Console) -> int:
    out = FeatureAttributionOutput.load(args.path)
    if args.html:
        _write_html(out, args, console)
    else:
        _show(out, args, console)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 2 usage or genattrib error).

    Example:
        >>> main(["methods"])
        attribution methods
        ...
        0
    """
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # --help, or a bad command line (argparse printed why)
        return exc.code if isinstance(exc.code, int) else ERROR_EXIT
    args.argv = list(argv) if argv is not None else sys.argv[1:]  # for the command that resumes
    console = Console()
    errors = Console(stderr=True)
    try:
        if args.command == "attribute":
            return _run_attribute(args, console)
        if args.command == "attribute-context":
            return run_attribute_context(args, console)
        if args.command == "attribute-dataset":
            return run_attribute_dataset(args, console)
        if args.command == "show":
            return _run_show(args, console)
        if args.command == "evaluate":
            return run_evaluate(args, console)
        if args.command == "methods":
            return run_methods(console)
        return run_targets(console)
    except _UsageError as exc:
        parser.print_usage(sys.stderr)
        errors.print(Text(f"genattrib: error: {exc}", style="red"), soft_wrap=True)
        return ERROR_EXIT
    except GenattribError as exc:
        message = " ".join(str(exc).split())
        errors.print(Text(f"error: {message}", style="bold red"), soft_wrap=True)
        return ERROR_EXIT
    except KeyboardInterrupt as interrupt:  # one line, no traceback: what is saved, the command that resumes
        line = interrupt_line(args, interrupt)
        if line is not None:
            errors.print(Text(line, style="yellow"), soft_wrap=True)
        return 130
