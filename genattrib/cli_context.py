"""``genattrib attribute-context``: PECoRe on the command line (Inseq's ``attribute-context``; the
options keep Inseq's names, with dashes).

Example::

    $ genattrib attribute-context --input-current-text "Where does Anna live?" \\
        --input-context-text "Anna moved to Lisbon in 2019." --input-template $'{context}\\n\\n{current}' \\
        --chat --max-new-tokens 12 --viz-path anna.html --save-path anna.json
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from rich.console import Console
from rich.markup import escape

import genattrib
from genattrib.cli_args import parse_param
from genattrib.context.attribute_context import SENSITIVITY_METRICS
from genattrib.models.loading.loader import DTYPE_NAMES


def add_attribute_context(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "attribute-context",
        help="which generated tokens depend on the context, and which context tokens drove them (PECoRe)",
    )
    p.add_argument("--model", "--model-name-or-path", default=None, metavar="ID_OR_PATH",
                   help="model (default: embedded SmolLM2-135M-Instruct)")  # fmt: skip
    p.add_argument("--dtype", choices=DTYPE_NAMES, default=None)
    p.add_argument("--input-current-text", required=True, metavar="TEXT", help="the question or text answered")
    p.add_argument("--input-context-text", default=None, metavar="TEXT", help="the context (e.g. a retrieved document)")
    p.add_argument("--input-template", default=None, metavar="TEMPLATE", help="with {context} and {current}")
    p.add_argument("--output-current-text", default=None, metavar="TEXT", help="force this output (else generated)")
    p.add_argument("--output-context-text", default=None, metavar="TEXT", help="output context (e.g. a reasoning)")
    p.add_argument("--output-template", default=None, metavar="TEMPLATE")
    p.add_argument("--contextless-input-current-text", default="{current}", metavar="TEMPLATE")
    p.add_argument("--contextless-output-current-text", default="{current}", metavar="TEMPLATE")
    p.add_argument("--chat", action="store_true", help="the input is the user message of a chat (chat template)")
    p.add_argument("--context-sensitivity-metric", choices=SENSITIVITY_METRICS, default="kl_divergence")
    p.add_argument("--context-sensitivity-std-threshold", type=float, default=1.0, metavar="K")
    p.add_argument("--context-sensitivity-topk", type=int, default=None, metavar="N")
    p.add_argument("--attribution-method", "--method", dest="method", default=None, metavar="METHOD")
    p.add_argument("--attributed-fn", default="contrast_prob_diff", metavar="NAME")
    p.add_argument("--attribution-std-threshold", type=float, default=1.0, metavar="K",
                   help="cues shown: mean + K std of the context scores")  # fmt: skip
    p.add_argument("--attribution-topk", type=int, default=5, metavar="N", help="at most N cues shown per token")
    p.add_argument("--param", action="append", default=[], type=parse_param, metavar="NAME=VALUE",
                   help="a method parameter (repeatable)")  # fmt: skip
    p.add_argument("--max-new-tokens", type=int, default=None, metavar="N")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--save-path", "-o", default=None, metavar="JSON", help="write the result as JSON")
    p.add_argument("--viz-path", default=None, metavar="PAGE", help="write the HTML view")
    p.add_argument("--no-show", dest="show", action="store_false", help="do not print the console view")


def run_attribute_context(args: argparse.Namespace, console: Console) -> int:
    load_options: dict[str, Any] = {} if args.dtype is None else {"dtype": getattr(torch, args.dtype)}
    model = genattrib.load_model(args.model, **load_options)
    generation = {} if args.max_new_tokens is None else {"max_new_tokens": args.max_new_tokens}
    out = genattrib.attribute_context(
        model,
        args.input_current_text,
        input_context_text=args.input_context_text,
        input_template=args.input_template,
        output_current_text=args.output_current_text,
        output_context_text=args.output_context_text,
        output_template=args.output_template,
        contextless_input_current_text=args.contextless_input_current_text,
        contextless_output_current_text=args.contextless_output_current_text,
        chat=args.chat,
        context_sensitivity_metric=args.context_sensitivity_metric,
        context_sensitivity_std_threshold=args.context_sensitivity_std_threshold,
        context_sensitivity_topk=args.context_sensitivity_topk,
        method=args.method,
        attributed_fn=args.attributed_fn,
        method_kwargs=dict(args.param) or None,
        seed=args.seed,
        **generation,
    )
    if args.show:
        console.print(escape(out.to_text(args.attribution_std_threshold, args.attribution_topk)), soft_wrap=True)
    if args.save_path:
        out.save(args.save_path)
    if args.viz_path:
        out.save_html(args.viz_path, args.attribution_std_threshold, args.attribution_topk)
    return 0
