"""attribute-context (PECoRe) in genattrib vs Inseq 0.7.1 on the default model: CPU time, wall time and
peak RSS of each, one process per run, interleaved, one thread; and the step-one scores of both.

Run in the bench/parity venv (Inseq installed): ``python benchmarks/bench_attribute_context.py --rounds 2``.
Both explain the same forced answer (no generation), with saliency and ``contrast_prob_diff``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

CONTEXT = "Anna moved to Lisbon in 2019 and works as a nurse at the city hospital."
CURRENT = "Question: Where does Anna live? Answer:"
ANSWER = "Anna lives in Lisbon, Portugal."


def run_one(library: str) -> dict:
    import torch

    torch.set_num_threads(1)
    import genattrib

    model = genattrib.load_model()  # both libraries run on this model object
    start, cpu0 = time.perf_counter(), time.process_time()
    if library == "genattrib":
        out = genattrib.attribute_context(
            model, CURRENT, input_context_text=CONTEXT, output_current_text=ANSWER, method="saliency"
        )
        scores, selected = out.sensitivity_scores, out.selected
        cues = [c.input_context_scores for c in out.cues]
    else:
        import copy

        import inseq
        from inseq.commands.attribute_context.attribute_context import attribute_context_with_model
        from inseq.commands.attribute_context.attribute_context_args import AttributeContextArgs

        inseq_model = inseq.load_model(model.model, "saliency", tokenizer=copy.deepcopy(model.tokenizer))
        args = AttributeContextArgs(
            model_name_or_path="default",
            attribution_method="saliency",
            input_current_text=CURRENT,
            input_context_text=CONTEXT,
            output_current_text=ANSWER,
            attributed_fn="contrast_prob_diff",
            show_viz=False,
            show_intermediate_outputs=False,
        )
        out = attribute_context_with_model(args, inseq_model)
        scores, selected = out.cti_scores, [c.cti_idx for c in out.cci_scores]
        cues = [c.input_context_scores for c in out.cci_scores]
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "library": library,
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_rss_mb": rss,
        "scores": scores,
        "selected": selected,
        "cues": cues,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--one", choices=("genattrib", "inseq"), default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one)))
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    runs: dict[str, list[dict]] = {"genattrib": [], "inseq": []}
    for _ in range(args.rounds):
        for library in ("inseq", "genattrib"):  # interleaved
            done = subprocess.run(
                [sys.executable, __file__, "--one", library], env=env, capture_output=True, text=True, check=True
            )
            runs[library].append(json.loads(done.stdout.strip().splitlines()[-1]))
    for library, results in runs.items():
        best = min(results, key=lambda r: r["cpu_s"])
        print(
            f"{library:9s} cpu {best['cpu_s']:6.2f} s  wall {best['wall_s']:6.2f} s  "
            f"peak RSS {best['peak_rss_mb']:7.0f} MB"
            f"  selected {best['selected']}  scores {[round(s, 4) for s in best['scores']]}"
        )
    import torch

    ours, theirs = runs["genattrib"][0], runs["inseq"][0]
    step_one = max(abs(a - b) for a, b in zip(ours["scores"], theirs["scores"]))
    print(f"step one: max |Δ| {step_one:.2e}; selected {ours['selected']} vs {theirs['selected']}")
    for index, (a, b) in enumerate(zip(ours["cues"], theirs["cues"])):
        a, b = torch.tensor(a), torch.tensor(b)
        n = min(len(a), len(b))  # Inseq drops the context's special tokens
        cos = float(torch.nn.functional.cosine_similarity(a[-n:], b[-n:], dim=0))
        print(f"step two, token {ours['selected'][index]}: {len(a)} vs {len(b)} context scores, cosine {cos:.6f}")
    g = min(r["cpu_s"] for r in runs["genattrib"])
    i = min(r["cpu_s"] for r in runs["inseq"])
    gm = max(r["peak_rss_mb"] for r in runs["genattrib"])
    im = max(r["peak_rss_mb"] for r in runs["inseq"])
    print(f"genattrib / Inseq: CPU time {g / i:.2f}, peak RSS {gm / im:.2f} (best of {args.rounds} rounds, 1 thread)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
