"""genattrib vs Inseq 0.7.1: same model, prompt, forced continuation and parameters, A/B interleaved.

Both libraries explain every token of a fixed continuation (55 tokens with the default model) of a
fixed English prompt, attributing the probability of each token (Inseq's default attributed
function; genattrib is asked for the same one). Per method: one untimed warm-up call per library,
then ``--repeats`` rounds of (genattrib, Inseq), reporting medians and minimums of wall time and of
process CPU time, and Inseq ÷ genattrib ratios. Peak memory comes from a fresh subprocess per
(library, method) that loads the model and runs the method once. See docs/benchmarks.md.

    nox -s bench                                             # full run: 9 methods, 55 tokens, 1 thread
    nox -s bench -- --tokens 3 --n-steps 4 --repeats 1 --methods saliency occlusion
    nox -s bench -- --device cuda --dtype bfloat16 --flops --json bench-bf16.json
    python benchmarks/bench_vs_inseq.py --skip-inseq --extra-methods reagent rpi
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
from dataclasses import asdict
from functools import partial
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import (  # noqa: E402
    ATTRIBUTED_FN,
    EXTRA_METHODS,
    PROMPT,
    SPECS,
    Case,
    body_params,
    continuation_of,
    ig_flops,
    log,
    matmul_throughput,
    max_abs_diff,
    table,
    timed,
)

from genattrib.machine import cpu_model, machine_record

WARM_TOKENS = 4  # the short warm-up: the first tokens of the continuation


def load(args: argparse.Namespace) -> Any:
    import genattrib

    dtype = getattr(torch, args.dtype)
    return genattrib.load_model(args.model, dtype=dtype, device_map=args.device if args.device == "cuda" else None)


def genattrib_call(model: Any, method: str, args: argparse.Namespace) -> Any:
    params = SPECS[method].genattrib(args) if method in SPECS else {}

    def call(continuation: str) -> Any:
        return model.attribute(
            PROMPT, target=continuation, method=method, attributed_fn=ATTRIBUTED_FN, seed=0, **params
        )

    return call


def calls_for(model: Any, method: str, args: argparse.Namespace, only: str | None = None) -> dict[str, Any]:
    """The calls of ``method`` per library (genattrib first; Inseq only for methods it has)."""
    calls = {"genattrib": genattrib_call(model, method, args)} if only in (None, "genattrib") else {}
    if method in SPECS and not args.skip_inseq and only in (None, "inseq"):
        from inseq_runner import inseq_call

        calls["inseq"] = inseq_call(model, method, args)
    return calls


def steps_of(library: str, out: Any) -> int:
    if library == "genattrib":
        return out.sequences[0].num_steps
    from inseq_runner import inseq_steps

    return inseq_steps(out)


def bench_method(model: Any, method: str, args: argparse.Namespace, text: str, warm: str) -> tuple[dict, Any]:
    """Warm-up per library, then ``--repeats`` interleaved rounds; returns the cases and the score check."""
    calls = calls_for(model, method, args)
    cases = {lib: Case(method, lib) for lib in calls}
    first: dict[str, Any] = {}
    for lib, call in calls.items():
        if args.warmup != "none":
            cases[lib].warmup, _ = timed(partial(call, text if args.warmup == "full" else warm), args.device)
            log(f"{method} / {lib}: warm-up {cases[lib].warmup.wall:.2f} s (not counted)")
    for r in range(args.repeats):
        for lib, call in calls.items():
            run, out = timed(partial(call, text), args.device)
            cases[lib].runs.append(run)
            cases[lib].steps = steps_of(lib, out)
            first.setdefault(lib, out)
            if hasattr(out, "provenance"):
                cases[lib].work = dict(out.provenance.work)
            log(f"{method} / {lib}: round {r + 1}/{args.repeats}: {run.wall:.3f} s wall, {run.cpu:.3f} s CPU")
    return cases, score_check(method, first)


def score_check(method: str, outs: dict[str, Any]) -> Any:
    if method not in SPECS or "inseq" not in outs:
        return "-"
    reduction = SPECS[method].reduction
    if reduction is None:
        return "stochastic"
    from inseq_runner import genattrib_matrix, inseq_matrix

    return max_abs_diff(genattrib_matrix(outs["genattrib"], reduction), inseq_matrix(outs["inseq"], reduction))


# --- memory: one fresh process per (library, method) -----------------------------------------
def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _status_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak since start or the last reset) from ``/proc/self/status``."""
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    return float("nan")


def _reset_peak_rss() -> bool:
    """Reset the peak RSS to the current RSS (Linux: ``/proc/self/clear_refs``), so loading's own
    transient peak does not hide the method's; False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def child(args: argparse.Namespace) -> int:
    """``--child LIB:METHOD``: load, run once, print one JSON line of memory figures (MB)."""
    library, method = args.child.split(":")
    model = load(args)
    text, _ = continuation_of(model.tokenizer, args.tokens)
    call = calls_for(model, method, args, only=library)[library]
    report: dict[str, Any] = {"load_peak_rss_mb": _maxrss_mb(), "rss_after_load_mb": _status_mb("VmRSS")}
    report["peak_reset"] = _reset_peak_rss()
    if args.device == "cuda":
        torch.cuda.synchronize()
        report["cuda_after_load_mb"] = torch.cuda.memory_allocated() / 2**20
        torch.cuda.reset_peak_memory_stats()
    call(text)
    # ru_maxrss also keeps the peak of threads that exited after loading: after a reset, VmHWM is the run's own
    report["ru_maxrss_mb"] = _maxrss_mb()
    report["peak_rss_mb"] = _status_mb("VmHWM") if report["peak_reset"] else report["ru_maxrss_mb"]
    if args.device == "cuda":
        torch.cuda.synchronize()
        report["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print("MEMORY " + json.dumps(report), flush=True)
    return 0


def measure_memory(case: Case, argv: list[str]) -> None:
    cmd = [sys.executable, os.path.abspath(__file__), *argv, "--child", f"{case.library}:{case.method}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("MEMORY ")]
    if proc.returncode or not lines:
        log(f"memory of {case.method} / {case.library} failed (rc {proc.returncode}): {proc.stderr[-800:]}")
        return
    case.memory = json.loads(lines[-1][len("MEMORY ") :])
    log(f"{case.method} / {case.library}: memory {case.memory}")


def flops_report(model: Any, args: argparse.Namespace, n_tokens: int, cases: dict) -> dict[str, Any]:
    """FLOPs of the IG call, measured matmul throughput, and the fraction of it each library achieved."""
    prompt_len = len(model.tokenizer(PROMPT, add_special_tokens=False)["input_ids"])
    prefixes = [prompt_len + j for j in range(n_tokens)]
    flops = ig_flops(model.model.config, body_params(model.model), prefixes, args.n_steps)
    peak = matmul_throughput(args.device, getattr(torch, args.dtype))
    report = {"ig_flops": flops, "matmul_flops_per_s": peak, "dtype": args.dtype}
    print(f"\nIG-{args.n_steps} useful FLOPs: {flops:.3e}; {args.dtype} matmul throughput: {peak / 1e12:.3f} TFLOP/s")
    for lib in ("genattrib", "inseq"):
        case = cases.get(("integrated_gradients", lib))
        if case is None or not case.runs:
            continue
        achieved = flops / case.stat("wall", min)
        report[f"{lib}_flops_per_s"] = achieved
        print(f"  {lib}: {achieved / 1e12:.4f} TFLOP/s achieved (best run) = {achieved / peak:.1%} of matmul")
    return report


def environment(args: argparse.Namespace) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    def dist(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "-"

    return {
        "python": platform.python_version(),
        **{name: dist(name) for name in ("torch", "transformers", "genattrib", "inseq", "captum")},
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device_name": torch.cuda.get_device_name() if args.device == "cuda" else cpu_model(),
        "machine": machine_record(),  # CPU model, torch's kernels, MKL/oneDNN, threads
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(SPECS), choices=list(SPECS), metavar="METHOD")
    parser.add_argument("--extra-methods", nargs="+", default=[], choices=EXTRA_METHODS, help="genattrib-only rows")
    parser.add_argument("--tokens", type=int, default=None, help="first N tokens of the continuation (default all)")
    parser.add_argument("--n-steps", type=int, default=50, help="IG and SIG integration steps (default 50)")
    parser.add_argument("--n-anchors", type=int, default=30, help="DIG anchors (Inseq's n_steps; default 30)")
    parser.add_argument("--n-samples", type=int, default=20, help="GradientSHAP and LIME samples (default 20)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds per method (default 3)")
    parser.add_argument("--warmup", choices=("short", "full", "none"), default="short")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--model", default=None, help="hub id or local folder (default: the embedded model)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    parser.add_argument("--skip-inseq", action="store_true", help="time genattrib only")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-(library, method) memory processes")
    parser.add_argument("--flops", action="store_true", help="IG FLOPs vs a measured matmul throughput")
    parser.add_argument("--json", metavar="PATH", help="write every raw run as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # LIB:METHOD, the memory subprocess
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible")
    if args.repeats < 1 or args.threads < 1:
        parser.error("--repeats and --threads must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.child:
        return child(args)
    if not args.skip_inseq:
        try:
            import inseq  # noqa: F401
        except ImportError as error:
            sys.exit(f"Inseq is not importable ({error}); run `nox -s bench` or pass --skip-inseq")
    log(f"loading {args.model or 'the default model'} ({args.dtype}, {args.device}, {args.threads} thread(s)) ...")
    model = load(args)
    text, n_tokens = continuation_of(model.tokenizer, args.tokens)
    warm, _ = continuation_of(model.tokenizer, min(WARM_TOKENS, n_tokens))
    log(f"prompt {PROMPT!r}; forced continuation ({n_tokens} tokens) {text!r}")

    methods = list(dict.fromkeys(args.methods + args.extra_methods))
    cases: dict[tuple[str, str], Case] = {}
    diffs: dict[str, Any] = {}
    for method in methods:
        try:
            found, diffs[method] = bench_method(model, method, args, text, warm)
        except Exception as error:  # one broken method must not lose an hour of the others
            log(f"{method} FAILED: {type(error).__name__}: {error}")
            diffs[method] = f"failed: {type(error).__name__}"
            continue
        cases.update({(method, lib): case for lib, case in found.items()})
        for case in found.values():
            if case.steps != n_tokens:
                log(f"WARNING: {case.library} attributed {case.steps} steps for {method}, expected {n_tokens}")
    if not args.no_memory:
        child_argv = [a for a in argv if a != "--flops"]
        for case in cases.values():
            measure_memory(case, child_argv)

    env = environment(args)
    print(
        f"\n{n_tokens} forced tokens, {args.device} ({env['device_name']}), {args.dtype}, {args.threads} thread(s), "
        f"{args.repeats} interleaved rounds, attributed fn {ATTRIBUTED_FN}, IG/SIG n_steps={args.n_steps}, "
        f"DIG anchors={args.n_anchors}, SHAP/LIME samples={args.n_samples}\n"
    )
    print(table(cases, methods, diffs, args.device == "cuda"))
    print("ratio = Inseq ÷ genattrib (> 1: genattrib faster); max |Δscore| over the (step × position) matrices")
    flops = flops_report(model, args, n_tokens, cases) if args.flops else None

    if args.json:
        doc = {
            "prompt": PROMPT,
            "continuation": text,
            "tokens": n_tokens,
            "config": {k: v for k, v in vars(args).items() if k not in ("json", "child")},
            "environment": env,
            "cases": [{**asdict(c), "summary": c.summary()} for c in cases.values()],
            "max_abs_score_diff": diffs,
            "flops": flops,
        }
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(doc, handle, indent=2)
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
