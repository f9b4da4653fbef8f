"""``genattrib attribute-dataset``: attribute every record of a JSONL file, resumably, in one
process or many (``--processes N``, ``torchrun -m genattrib ...`` or ``accelerate launch --multi_gpu
-m genattrib ...``).

Example::

    $ genattrib attribute-dataset prompts.jsonl --out runs/wikitext --max-new-tokens 32
    $ genattrib attribute-dataset prompts.jsonl --out runs/wikitext --processes 2
    $ torchrun --nproc_per_node 2 -m genattrib attribute-dataset prompts.jsonl --out runs/wikitext
    $ accelerate launch --multi_gpu --num_processes 2 -m genattrib attribute-dataset prompts.jsonl --out runs/wikitext
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import torch
from rich.console import Console
from rich.text import Text

import genattrib
from genattrib.cli_args import PARAM_HELP, parse_param, split_list
from genattrib.dataset.launch import inside_launcher, launch_processes
from genattrib.errors import InvalidArgumentError
from genattrib.models.loading.loader import DTYPE_NAMES
from genattrib.models.options.explain_units import UNIT_NAMES
from genattrib.models.options.sources import SOURCE_NAMES

__all__ = ["add_attribute_dataset", "run_attribute_dataset"]


def add_attribute_dataset(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "attribute-dataset", help="attribute every record of a JSONL file (resumable; one process or many)"
    )
    p.add_argument(
        "data", metavar="DATA", help='a JSONL file, one record a line: {"prompt": ..., "target": ..., "id": ...}'
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the shards and manifest (rerun to resume)")
    p.add_argument(
        "--model", default=None, metavar="ID_OR_PATH", help="hub id or local folder (default: embedded SmolLM2)"
    )
    p.add_argument("--method", default=None, metavar="NAME", help="attribution method (see `genattrib methods`)")
    p.add_argument("--attributed-fn", default=None, metavar="NAME", help="function explained (see `genattrib targets`)")
    p.add_argument("--step-scores", type=split_list, default=None, metavar="A,B", help="per-step scores")
    p.add_argument("--max-new-tokens", type=int, default=None, metavar="N", help="tokens to generate per record")
    p.add_argument("--batch-size", type=int, default=8, metavar="N", help="records per batch (default: 8)")
    p.add_argument("--max-rows", type=int, default=None, metavar="N", help="model rows per call")
    p.add_argument(
        "--top-k-scores", type=int, default=None, metavar="K", help="keep the K largest |scores| of each row"
    )
    p.add_argument("--explain", choices=UNIT_NAMES, default=None, help="what each row explains (default: tokens)")
    p.add_argument(
        "--sources", choices=SOURCE_NAMES, default=None, help="group each prompt into source units (see attribute)"
    )
    p.add_argument("--sources-include-generated", action="store_true", help="with --sources, group generated text too")
    p.add_argument(
        "--stream-to",
        default=None,
        metavar="DIR",
        help="stream the rows of each batch in flight to DIR/batch-NNNNNN/, so an interrupted batch resumes "
        "where it stopped (removed once the batch's shard is written)",
    )
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="start N processes on this machine (as torchrun --nproc_per_node N; one thread each "
        "unless OMP_NUM_THREADS is set)",
    )
    p.add_argument("--dtype", choices=DTYPE_NAMES, default=None, help="model dtype")
    p.add_argument(
        "--device-map", default=None, metavar="MAP", help="device map of each process's replica, e.g. auto, cuda:0"
    )
    p.add_argument("--seed", type=int, default=None, help="seed for sampling and randomised methods")
    p.add_argument("--chat", action="store_true", help="treat text prompts as user messages (chat template)")
    p.add_argument("--strict", action="store_true", help="stop at the first bad record instead of listing it")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--param", type=parse_param, action="append", default=[], metavar="KEY=VALUE", help=PARAM_HELP)


def _check(args: argparse.Namespace) -> None:
    """Command-line mistakes, before any process starts or model loads."""
    if args.processes < 1:
        raise InvalidArgumentError("--processes", f"{args.processes} processes", "pass --processes 1 or more")
    world = os.environ.get("WORLD_SIZE")
    if args.processes > 1 and inside_launcher() and world != str(args.processes):
        raise InvalidArgumentError(
            "--processes",
            f"--processes {args.processes} under a launcher that started {world or 'its'} processes",
            "drop --processes when torchrun or accelerate starts the processes",
        )
    if args.sources_include_generated and args.sources is None:
        raise InvalidArgumentError(
            "--sources-include-generated", "it groups generated text into --sources units", "add --sources NAME"
        )
    keys = [key for key, _ in args.param]
    if {"top_k", "top_k_scores", "stream_to"} & set(keys):
        raise InvalidArgumentError(
            "--param", "top_k / top_k_scores / stream_to are options", "use --top-k-scores K or --stream-to DIR instead"
        )


def run_attribute_dataset(args: argparse.Namespace, console: Console) -> int:
    _check(args)
    if args.processes > 1 and not inside_launcher():
        return launch_processes(args.argv, args.processes)
    options: dict[str, Any] = {
        k: v
        for k, v in {
            "attributed_fn": args.attributed_fn,
            "step_scores": args.step_scores,
            "max_new_tokens": args.max_new_tokens,
            "max_rows": args.max_rows,
            "top_k_scores": args.top_k_scores,
            "seed": args.seed,
            "explain": args.explain,
            "sources": args.sources,
            "sources_include_generated": args.sources_include_generated or None,
        }.items()
        if v is not None
    }
    run = genattrib.attribute_dataset(
        args.model,
        args.data,
        args.out,
        args.method,
        batch_size=args.batch_size,
        strict=args.strict,
        chat=args.chat,
        show_progress=False if args.no_progress else None,
        dtype=None if args.dtype is None else getattr(torch, args.dtype),
        device_map=args.device_map,
        stream_to=args.stream_to,
        **options,
        **dict(args.param),
    )
    if run.rank == 0:
        console.print(
            Text.assemble(
                (str(run.out_dir), "bold"),
                f": {run.done} of {run.records} records done, {run.failed} failed, {run.pending} pending "
                f"({run.world} process{'es' if run.world > 1 else ''}; this one attributed {run.ran} records "
                f"in {run.seconds:.1f} s, {run.records_per_second:.2f} records/s)",
            ),
            soft_wrap=True,
        )
    return 0
