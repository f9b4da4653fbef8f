"""Dataset attribution throughput: a plain loop over ``attribute`` against ``attribute_dataset``
in one and in two processes (``torchrun --nproc_per_node 2``, gloo, CPU).

The 22 wikitext prompts (genattrib/data/wikitext_prompts.txt), ``--tokens`` generated tokens each
(greedy), saliency, the default model (SmolLM2-135M-Instruct, fp32), ``--threads`` intra-op
threads per process (default 1, torchrun's default: two processes then use two cores, where one
process uses one). Each mode runs in fresh processes, so each peak RSS is that process's own:

- ``loop``: one process, ``for prompt in prompts: model.attribute(prompt, max_new_tokens=T)``;
- ``dataset-1``: one process, ``genattrib.attribute_dataset(model, records, out_dir, ...)``
  (records sorted by length into batches of ``--batch-size``; one ``attribute()`` call a batch);
- ``dataset-2``: the same under ``torchrun --nproc_per_node 2``: each process loads the model
  and runs every other batch.

Throughput counts records and target (generated, attributed) tokens per second of the
attribution phase: from after the model is loaded until the last process is done (the manifest
written); model loading is reported apart. The two dataset runs are checked to give the same
result record for record (exactly), and the loop's generated text is compared with theirs.

    nox -s bench-dataset                               # results in docs/results/dataset.json
    nox -s bench-dataset -- --tokens 16 --json /tmp/dataset.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from genattrib.machine import machine_record

HERE = Path(__file__).resolve()


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def worker(args: argparse.Namespace) -> None:
    """One process of one mode: load the model, attribute, write this process's numbers."""
    import genattrib
    from genattrib.evaluation.datasets import load_dataset

    torch.set_num_threads(args.threads)
    prompts = [example.prompt for example in load_dataset("wikitext", args.prompts)]
    t0 = time.perf_counter()
    model = genattrib.load_model(method="saliency")
    loaded = time.perf_counter() - t0
    rank = int(os.environ.get("RANK", "0"))
    t1 = time.perf_counter()
    if args.mode == "loop":
        texts = []
        tokens = 0
        for prompt in prompts:
            out = model.attribute(prompt, max_new_tokens=args.tokens, show_progress=False)
            seq = out.sequences[0]
            texts.append(seq.generated_text)
            tokens += len(seq.tokens) - seq.prompt_length
        records = len(prompts)
        busy = time.perf_counter() - t1
    else:
        run = genattrib.attribute_dataset(
            model,
            [{"prompt": p, "id": i} for i, p in enumerate(prompts)],
            args.out_dir,
            batch_size=args.batch_size,
            max_new_tokens=args.tokens,
            show_progress=False,
        )
        records, tokens, texts, busy = run.ran, run.target_tokens, None, run.seconds
    seconds = time.perf_counter() - t1
    result = {
        "mode": args.mode,
        "rank": rank,
        "threads": torch.get_num_threads(),
        "load_seconds": loaded,
        "seconds": seconds,
        "busy_seconds": busy,  # until this process's last batch (before waiting for the others)
        "records": records,
        "target_tokens": tokens,
        "peak_rss_mb": _peak_rss_mb(),
        "texts": texts,
    }
    Path(f"{args.result}.rank{rank}.json").write_text(json.dumps(result))


def _run(command: list[str], env: dict[str, str]) -> None:
    print("$", " ".join(command), flush=True)
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def _collect(prefix: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(prefix.parent.glob(prefix.name + ".rank*.json"))]


def _summary(mode: str, ranks: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = max(r["seconds"] for r in ranks)  # the last process to finish
    records = sum(r["records"] for r in ranks)
    tokens = sum(r["target_tokens"] for r in ranks)
    return {
        "mode": mode,
        "processes": len(ranks),
        "threads_per_process": [r["threads"] for r in ranks],
        "seconds": seconds,
        "records": records,
        "target_tokens": tokens,
        "records_per_s": records / seconds,
        "tokens_per_s": tokens / seconds,
        "records_per_process": [r["records"] for r in ranks],
        "busy_seconds_per_process": [r.get("busy_seconds", r["seconds"]) for r in ranks],
        "load_seconds": [r["load_seconds"] for r in ranks],
        "peak_rss_mb": [r["peak_rss_mb"] for r in ranks],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=32, help="tokens generated per prompt (default: 32)")
    parser.add_argument("--prompts", type=int, default=None, help="use only the first N prompts (default: all 22)")
    parser.add_argument("--batch-size", type=int, default=8, help="records per batch (default: 8)")
    parser.add_argument("--json", default="docs/results/dataset.json", help="where to write the numbers")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per process (default: 1)")
    parser.add_argument("--mode", default=None, help=argparse.SUPPRESS)  # worker processes only
    parser.add_argument("--out-dir", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode is not None:
        worker(args)
        return
    import genattrib

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent.parent), os.environ.get("PYTHONPATH", "")])}
    env["OMP_NUM_THREADS"] = str(args.threads)  # torchrun would set 1
    common = ["--tokens", str(args.tokens), "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
    common += ["--prompts", str(args.prompts)] if args.prompts else []
    summaries = []
    load_before = os.getloadavg()  # other work on the machine skews every number: recorded
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        modes = {
            "loop": [sys.executable, str(HERE)],
            "dataset-1": [sys.executable, str(HERE)],
            "dataset-2": [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(HERE)],
        }
        for mode, launcher in modes.items():
            mode_args = ["--mode", mode.split("-")[0], "--out-dir", str(work / mode), "--result", str(work / mode)]
            _run([*launcher, *common, *mode_args], env)
            summaries.append(_summary(mode, _collect(work / mode)))
        one = genattrib.FeatureAttributionOutput.load(work / "dataset-1")
        two = genattrib.FeatureAttributionOutput.load(work / "dataset-2")
        identical = len(one) == len(two) and all(a.equals(b) for a, b in zip(one, two))
        max_diff = max(float((a.scores - b.scores).nan_to_num().abs().max()) for a, b in zip(one, two))
        loop_texts = _collect(work / "loop")[0]["texts"]
        same_text = sum(a == s.generated_text for a, s in zip(loop_texts, one.sequences))
    loop = summaries[0]
    for s in summaries:
        s["speedup_vs_loop"] = s["records_per_s"] / loop["records_per_s"]
    report = {
        "model": "SmolLM2-135M-Instruct (embedded default, fp32, CPU)",
        "method": "saliency",
        "prompts": loop["records"],
        "max_new_tokens": args.tokens,
        "batch_size": args.batch_size,
        "cpus": os.cpu_count(),
        "threads_per_process": args.threads,
        "torch": torch.__version__,
        "genattrib": genattrib.__version__,
        "machine": machine_record(),  # CPU model, torch's kernels, MKL/oneDNN
        "load_average_before_after": [list(load_before), list(os.getloadavg())],
        "dataset_1_equals_dataset_2_exactly": identical,
        "dataset_1_vs_dataset_2_max_abs_difference": max_diff,
        "loop_text_equals_dataset_text": f"{same_text} of {len(loop_texts)}",
        "runs": summaries,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    print(f"{'mode':<10} {'procs':>5} {'seconds':>8} {'records/s':>10} {'tokens/s':>9} {'speed-up':>8}  peak RSS MB")
    for s in summaries:
        rss = ", ".join(f"{m:.0f}" for m in s["peak_rss_mb"])
        print(
            f"{s['mode']:<10} {s['processes']:>5} {s['seconds']:>8.1f} {s['records_per_s']:>10.3f} "
            f"{s['tokens_per_s']:>9.2f} {s['speedup_vs_loop']:>7.2f}x  {rss}"
        )
    print(f"dataset-1 == dataset-2 exactly: {identical} (max |difference| {max_diff:.2e})")
    print(f"loop text == dataset text: {same_text} of {len(loop_texts)}")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
