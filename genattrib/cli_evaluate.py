"""``genattrib evaluate``: compare attribution methods on a prompt set (rich table, JSON, HTML).

Example::

    $ genattrib evaluate --methods saliency,integrated_gradients,reagent --dataset wikitext \\
        --max-new-tokens 10 --method-param integrated_gradients.n_steps=16
    $ torchrun --nproc_per_node 4 -m genattrib evaluate --methods saliency,occlusion --out-dir runs/eval
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
from rich.console import Console
from rich.text import Text

import genattrib
from genattrib.cli_args import parse_value, split_list
from genattrib.evaluation.on_dataset import is_main_process
from genattrib.models.loading.loader import DTYPE_NAMES
from genattrib.seeding import DEFAULT_SEED
from genattrib.validation import check_number


def _method_param(text: str) -> tuple[str, str, Any]:
    """``"integrated_gradients.n_steps=16"`` → ``("integrated_gradients", "n_steps", 16)``."""
    key, sep, value = text.partition("=")
    method, dot, name = key.strip().partition(".")
    if not sep or not dot or not method or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected METHOD.KEY=VALUE, got {text!r}")
    return method, name, parse_value(value)


def _clock(seconds: float) -> str:
    """``83.2`` → ``"1:23"``; ``3723`` → ``"1:02:03"``."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="compare attribution methods with faithfulness metrics")
    p.add_argument(
        "--methods", type=split_list, required=True, metavar="A,B", help="methods to compare (see `genattrib methods`)"
    )
    p.add_argument(
        "--dataset",
        default="wikitext",
        metavar="NAME",
        help="wikitext | tellmewhy (sequence level; join them with a comma) | longra (token level, distractor "
        "mass) (default: wikitext)",
    )
    p.add_argument(
        "--metrics",
        type=split_list,
        default=None,
        metavar="A,B",
        help="metrics, or 'all' (default: soft_ns,soft_nc,comprehensiveness,sufficiency,log_odds)",
    )
    p.add_argument(
        "--max-new-tokens", type=int, default=10, metavar="N", help="tokens written per prompt (default: 10)"
    )
    p.add_argument("--every", type=int, default=2, metavar="N", help="evaluate every N-th generated token (default: 2)")
    p.add_argument("--max-examples", type=int, default=None, metavar="N", help="use only the first N prompts")
    p.add_argument(
        "--k", type=float, default=20.0, metavar="PERCENT", help="top-k%% for comprehensiveness etc. (default: 20)"
    )
    p.add_argument(
        "--model", default=None, metavar="ID_OR_PATH", help="model (default: embedded SmolLM2-135M-Instruct)"
    )
    p.add_argument("--dtype", choices=DTYPE_NAMES, default=None, help="model dtype")
    p.add_argument("--device-map", default=None, metavar="MAP", help="accelerate device map, e.g. auto, cuda:0")
    p.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help="seed for methods, metrics and bootstrap (default: %(default)s)"
    )
    p.add_argument(
        "--method-param",
        type=_method_param,
        action="append",
        default=[],
        metavar="METHOD.KEY=VALUE",
        help="a method parameter, repeatable, e.g. integrated_gradients.n_steps=16",
    )
    p.add_argument(
        "--time-budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="limit for methods with an anytime loop (reagent: seconds of probing per batch of targets; probes "
        "still running are cut off); a METHOD.time_budget --method-param wins (default: no limit)",
    )
    p.add_argument("--no-random", action="store_true", help="leave out the random-scores reference row")
    p.add_argument(
        "--out-dir",
        default=None,
        metavar="DIR",
        help="run on the dataset runner: attributions and metrics written to DIR, split over the processes of "
        "accelerate launch / torchrun, resumed by the same command",
    )
    p.add_argument("--batch-size", type=int, default=8, metavar="N", help="records per batch with --out-dir")
    p.add_argument(
        "--json",
        default="genattrib-evaluation.json",
        metavar="PATH",
        help="results as JSON, rewritten after each method (default: %(default)s)",
    )
    p.add_argument(
        "--html", default="genattrib-evaluation.html", metavar="PATH", help="HTML report (default: %(default)s)"
    )


def run_evaluate(args: argparse.Namespace, console: Console) -> int:
    params: dict[str, dict[str, Any]] = {}
    for method, key, value in args.method_param:
        params.setdefault(method, {})[key] = value
    metrics: Any = args.metrics
    if metrics == ["all"]:
        metrics = "all"
    if args.time_budget is not None:  # before the model loads
        check_number("time_budget", args.time_budget, "--time-budget 60", low=0, strict=True, what="seconds")
    load_options: dict[str, Any] = {}
    if args.dtype is not None:
        load_options["dtype"] = getattr(torch, args.dtype)
    if args.device_map is not None:
        load_options["device_map"] = args.device_map
    model = genattrib.load_model(args.model, **load_options)

    started = time.monotonic()
    status = Console(stderr=True, highlight=False)
    position = {}

    def elapsed() -> str:
        return _clock(time.monotonic() - started)

    def starting(method: str, number: int, total: int) -> None:
        position[method] = f"[{number}/{total}]"
        status.print(
            Text.assemble(f"{position[method]} ", (method, "bold"), f" running · elapsed {elapsed()}"), soft_wrap=True
        )

    def progress(run: Any) -> None:
        mark = f" · completeness {run.completeness.label()}" if run.completeness is not None else ""
        status.print(
            Text.assemble(
                f"{position.get(run.method, '')} ",
                (run.method, "bold"),
                f" done: {run.tokens} tokens attributed in {run.attribute_seconds:.1f} s, "
                f"evaluated in {run.result.info.get('seconds', 0.0):.1f} s{mark} · elapsed {elapsed()}",
                style="dim",
            ),
            soft_wrap=True,
        )

    result = genattrib.benchmark(
        model,
        args.methods,
        args.dataset,
        metrics,
        max_new_tokens=args.max_new_tokens,
        every=args.every,
        max_examples=args.max_examples,
        method_kwargs=params,
        seed=args.seed,
        k=args.k,
        include_random=not args.no_random,
        checkpoint=args.json,
        on_method_done=progress,
        on_method_start=starting,
        out_dir=args.out_dir,
        batch_size=args.batch_size,
        time_budget=args.time_budget,
    )
    if not is_main_process():
        return 0  # rank 0 reports
    result.show(console)
    json_path = result.save_json(args.json)
    html_path = result.save_html(args.html)
    console.print(Text.assemble("wrote ", (str(json_path), "bold"), " and ", (str(html_path), "bold")))
    return 0
