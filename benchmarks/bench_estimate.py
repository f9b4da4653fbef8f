"""How well ``model.estimate()`` predicts ``model.attribute()``: predicted vs measured seconds.

For a few settings on the embedded default model (SmolLM2-135M-Instruct), the script calls
``estimate()`` (its calibration included in its own time, reported apart), then runs the same
call with ``attribute()`` and reports measured / predicted time, and the planned model rows
against the rows the run needed (``provenance.work["rows"]``).

    nox -s bench_estimate                         # all settings
    python benchmarks/bench_estimate.py --tokens 16 --settings saliency ig8
    python benchmarks/bench_estimate.py --model-config llama   # a random model of another shape
    python benchmarks/bench_estimate.py --json estimate.json

Settings (``--settings``): ``saliency`` (generated continuation of ``--tokens`` tokens),
``saliency-forced`` (the same continuation forced), ``ig8`` (integrated gradients, 8 steps),
``occlusion``, ``sentences`` (saliency explaining sentences), ``lime`` (64 samples). Every
setting but ``saliency`` forces a continuation generated once up front, so the estimate plans
exactly; ``saliency`` leaves it to generation (the estimate assumes ``--tokens`` tokens).
``--model-config`` (``llama`` or ``gpt2``) swaps the default model for a randomly initialised one
of another shape (:data:`CONFIGS`, the default model's tokenizer): the planner's cost model reads
the config, so its predictions are checked on more than the model it was written on.
One warm-up ``attribute()`` call on a short prefix precedes the timings; with ``--repeats N``
the fastest of N calls counts.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

import torch

import genattrib
from genattrib.machine import machine_record

PROMPT = "The bicycle was invented in the early nineteenth century, and"
SETTINGS: dict[str, dict[str, Any]] = {
    "saliency": {"method": "saliency"},
    "saliency-forced": {"method": "saliency", "forced": True},
    "ig8": {"method": "integrated_gradients", "n_steps": 8, "forced": True},
    "occlusion": {"method": "occlusion", "forced": True},
    "sentences": {"method": "saliency", "explain": "sentences", "forced": True},
    "lime": {"method": "lime", "n_samples": 64, "forced": True},
}


#: Random models of other shapes than the default (30 layers of 576, gated MLP, 3 KV heads of 9).
CONFIGS: dict[str, dict[str, Any]] = {
    "llama": {"hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 6, "num_attention_heads": 8},
    "gpt2": {"n_embd": 384, "n_layer": 4, "n_head": 6},
}


def _random_model(kind: str, device: str) -> genattrib.AttributionModel:
    """A randomly initialised ``kind`` model (:data:`CONFIGS`) with the default model's tokenizer."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    tokenizer = genattrib.load_model(device_map="cpu").tokenizer
    common = {"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id, "eos_token_id": None}
    torch.manual_seed(0)
    if kind == "llama":
        hf = LlamaForCausalLM(LlamaConfig(max_position_embeddings=2048, **CONFIGS[kind], **common))
    else:
        hf = GPT2LMHeadModel(GPT2Config(n_positions=1024, **CONFIGS[kind], **common))
    return genattrib.load_model((hf.eval().to(device), tokenizer))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=32, help="generated tokens (default: 32)")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--device", default=None, help="device_map for load_model (default: cpu or cuda)")
    parser.add_argument("--repeats", type=int, default=1, help="timed calls per setting (fastest counts)")
    parser.add_argument("--model-config", default=None, choices=list(CONFIGS), help="a random model of this shape")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the rows as JSON")
    args = parser.parse_args(argv)

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = (
        genattrib.load_model(device_map=device)
        if args.model_config is None
        else _random_model(args.model_config, device)
    )
    continuation = model.generate(PROMPT, max_new_tokens=args.tokens, min_new_tokens=args.tokens)[0]
    model.attribute(PROMPT, continuation[:4], method="saliency")  # warm-up
    rows = []
    print(f"model {model.name}, {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    header = ("setting", "predicted s", "measured s", "ratio", "rows plan", "rows run", "est. s")
    print(f"{header[0]:<16}" + "".join(f"{h:>12}" for h in header[1:]))
    for name in args.settings:
        options = dict(SETTINGS[name])
        forced = continuation if options.pop("forced", False) else None
        extra = {} if forced is not None else {"max_new_tokens": args.tokens, "min_new_tokens": args.tokens}
        start = time.perf_counter()
        est = model.estimate(PROMPT, forced, **options, **extra)
        estimate_s = time.perf_counter() - start
        measured = math.inf
        for _ in range(args.repeats):
            start = time.perf_counter()
            out = model.attribute(PROMPT, forced, **options, **extra)
            measured = min(measured, time.perf_counter() - start)
        row = {
            "setting": name,
            "predicted_s": est.predicted_seconds,
            "measured_s": measured,
            "ratio": measured / est.predicted_seconds,
            "planned_rows": est.model_rows,
            "rows_run": out.provenance.work["rows"],
            "estimate_call_s": estimate_s,
            "estimate": est.to_dict(),
        }
        rows.append(row)
        print(
            f"{name:<16}{est.predicted_seconds:>12.2f}{measured:>12.2f}{row['ratio']:>12.2f}"
            f"{est.model_rows:>12,}{out.provenance.work['rows']:>12,}{estimate_s:>12.2f}"
        )
    if args.json:
        meta = {"model": model.name, "device": device, "torch": torch.__version__, "machine": machine_record()}
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
