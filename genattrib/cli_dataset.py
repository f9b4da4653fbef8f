"""``genattrib attribute-dataset``: attribute every record of a JSONL file, resumably, in one
process or many (``accelerate launch -m genattrib ...`` / ``torchrun -m genattrib ...``).

Example::

    $ genattrib attribute-dataset prompts.jsonl --out runs/wikitext --max-new-tokens 32
    $ torchrun --nproc_per_node 2 -m genattrib attribute-dataset prompts.jsonl --out runs/wikitext
    $ accelerate launch --num_processes 2 --cpu -m genattrib attribute-dataset prompts.jsonl --out runs/wikitext
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from rich.console import Console
from rich.text import Text

import genattrib
from genattrib.cli_args import parse_param, split_list
from genattrib.models.loading import DTYPE_NAMES

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
    p.add_argument("--top-k", type=int, default=None, metavar="K", help="keep the K largest |scores| of each row")
    p.add_argument("--dtype", choices=DTYPE_NAMES, default=None, help="model dtype")
    p.add_argument(
        "--device-map", default=None, metavar="MAP", help="device map of each process's replica, e.g. auto, cuda:0"
    )
    p.add_argument("--seed", type=int, default=None, help="seed for sampling and randomised methods")
    p.add_argument("--chat", action="store_true", help="treat text prompts as user messages (chat template)")
    p.add_argument("--strict", action="store_true", help="stop at the first bad record instead of listing it")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--param", type=parse_param, action="append", default=[], metavar="KEY=VALUE", help="method parameter"
    )


def run_attribute_dataset(args: argparse.Namespace, console: Console) -> int:
    options: dict[str, Any] = {
        k: v
        for k, v in {
            "attributed_fn": args.attributed_fn,
            "step_scores": args.step_scores,
            "max_new_tokens": args.max_new_tokens,
            "max_rows": args.max_rows,
            "top_k": args.top_k,
            "seed": args.seed,
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
