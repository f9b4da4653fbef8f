"""genattrib vs Inseq 0.7.1 on an encoder-decoder model: CPU time and peak RSS per method, one process per
(library, method, round), interleaved (Inseq, genattrib, Inseq, genattrib ...), one thread.

The model is a randomly initialised T5 of t5-small's shape (6 + 6 layers, d_model 512, d_ff 2048,
8 heads; no hub is reachable, and the weights do not change the cost) with the tiny test tokenizer
(tests/helpers/tiny_seq2seq.py), so the LM head is small and the time is the two stacks'. Both
libraries explain the same forced target token by token, attributing the probability, to the source
(both libraries' default: the target prefix held fixed; Inseq's layer methods refuse
``attribute_target=True``). Each process builds the model, runs one untimed warm-up call on a short
target, then times one call.

Run in the bench/parity venv (Inseq installed)::

    python benchmarks/bench_encoder_decoder.py --rounds 3
    python benchmarks/bench_encoder_decoder.py --methods saliency --rounds 1 --json enc-dec.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SOURCE = "The committee published its report on the state of the city's bridges after a long delay, and"
TARGET = "the mayor promised that the repairs would begin before the end of the year."
WARM_TARGET = "the mayor"
METHODS = ("saliency", "input_x_gradient", "integrated_gradients", "layer_integrated_gradients", "occlusion")
N_STEPS = 16


def build() -> tuple[Any, Any]:
    """A t5-small-shaped T5 (random weights, seed 0) and the tiny seq2seq tokenizer."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    sys.path.insert(0, str(ROOT / "tests" / "helpers"))
    from tiny_seq2seq import make_seq2seq_tokenizer

    tok = make_seq2seq_tokenizer()
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=len(tok),
        d_model=512,
        d_kv=64,
        d_ff=2048,
        num_layers=6,
        num_decoder_layers=6,
        num_heads=8,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.pad_token_id,
    )
    return T5ForConditionalGeneration(config).eval(), tok


def run_one(library: str, method: str) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    hf, tok = build()
    params: dict[str, Any] = {"n_steps": N_STEPS} if "integrated_gradients" in method else {}
    if library == "genattrib":
        import genattrib

        model = genattrib.load_model((hf, tok))

        def call(target: str) -> Any:
            return model.attribute(SOURCE, target, method=method, attributed_fn="probability", **params)
    else:
        import inseq

        model = inseq.load_model(hf, method, tokenizer=copy.deepcopy(tok))
        extra = {"internal_batch_size": N_STEPS} if params else {}

        def call(target: str) -> Any:
            return model.attribute(SOURCE, generated_texts=target, show_progress=False, **params, **extra)

    call(WARM_TARGET)
    start, cpu0 = time.perf_counter(), time.process_time()
    call(TARGET)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--one", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(*args.one)))
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    errors: dict[tuple[str, str], str] = {}
    for round_ in range(args.rounds):
        for method in args.methods:
            order = ("inseq", "genattrib") if round_ % 2 == 0 else ("genattrib", "inseq")
            for library in order:
                cmd = [sys.executable, __file__, "--one", library, method]
                done = subprocess.run(cmd, env=env, capture_output=True, text=True)
                if done.returncode:  # e.g. Inseq 0.7.1's layer methods on an encoder-decoder model
                    errors[(library, method)] = (done.stderr.strip().splitlines() or ["?"])[-1][:200]
                    continue
                runs.setdefault((library, method), []).append(json.loads(done.stdout.strip().splitlines()[-1]))
    rows = []
    print(f"{'method':28} {'genattrib cpu s':>16} {'Inseq cpu s':>12} {'time ratio':>11} {'RSS ratio':>10}")
    for method in args.methods:
        failed = [f"{lib} fails: {errors[(lib, method)]}" for lib in ("genattrib", "inseq") if (lib, method) in errors]
        if failed:
            rows.append({"method": method, "errors": failed})
            print(f"{method:28} " + "; ".join(failed))
            continue
        ours, theirs = runs[("genattrib", method)], runs[("inseq", method)]
        g, i = (statistics.median(r["cpu_s"] for r in side) for side in (ours, theirs))
        gm, im = (statistics.median(r["peak_rss_mb"] for r in side) for side in (ours, theirs))
        rows.append({"method": method, "genattrib": ours, "inseq": theirs, "cpu_ratio": g / i, "rss_ratio": gm / im})
        print(f"{method:28} {g:16.2f} {i:12.2f} {g / i:11.2f} {gm / im:10.2f}")
    print(f"genattrib / Inseq: medians of {args.rounds} interleaved rounds, 1 thread, T5 (t5-small shape)")
    if args.json:
        args.json.write_text(json.dumps({"rounds": args.rounds, "n_steps": N_STEPS, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
