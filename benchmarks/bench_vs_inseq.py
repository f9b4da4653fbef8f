"""genattrib vs Inseq 0.7.1: same model, same prompt, same forced continuation, one process.

Both libraries explain every token of a fixed 55-token continuation of a fixed English prompt
with the embedded default model (SmolLM2-135M-Instruct), attributing the probability of each
token (Inseq's default attributed function; genattrib is asked for the same one). Methods:
saliency and integrated gradients with 50 Gauss-Legendre steps (Inseq: internal_batch_size=50).
The path methods from the papers (SIG, DIG, UDIG) are timed for genattrib only
(``--methods sequential_integrated_gradients ...``); every genattrib row also reports the model
rows it needed (forward+backward and forward-only, from ``provenance.work``).

    nox -s bench                                  # full run (GPU if there is one)
    nox -s bench -- --tokens 10                   # quick CPU run
    nox -s bench -- --device cuda --dtype bfloat16 --json bench.json
    python benchmarks/bench_vs_inseq.py --skip-inseq --methods saliency
    python benchmarks/bench_vs_inseq.py --skip-inseq --tokens 8 --n-steps 8 --methods \
        sequential_integrated_gradients discretized_integrated_gradients uniform_discretized_integrated_gradients

Each (library, method) gets one warm-up call on a short prefix of the continuation (excluded
from the timings; ``--warmup full`` repeats the whole call instead, ``--warmup none`` skips it),
then ``--repeats`` timed calls (median reported). Loading the model is not timed. Inseq is only
installed in the ``bench`` nox session; outside it, pass ``--skip-inseq``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

PROMPT = "The bicycle was invented in the early nineteenth century, and"
CONTINUATION = (  # exactly 55 SmolLM2 tokens; checked at run time
    " within a few decades it had changed how people travelled to work, visited friends and explored"
    " the countryside. Early machines were heavy and hard to steer, but the safety bicycle of the 1880s,"
    " with two equal wheels and a chain drive, made cycling popular."
)
ATTRIBUTED_FN = "probability"  # Inseq's default; genattrib's default is logprob (same cost)
METHODS = ("saliency", "integrated_gradients")
PATH_METHODS = (  # genattrib only
    "sequential_integrated_gradients",
    "discretized_integrated_gradients",
    "uniform_discretized_integrated_gradients",
)


@dataclass
class Result:
    method: str
    library: str
    tokens: int
    seconds: float
    runs: list[float] = field(default_factory=list)
    peak_mib: float | None = None
    attributed_steps: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("inf")

    @property
    def seconds_per_token(self) -> float:
        return self.seconds / self.tokens if self.tokens else float("nan")

    def rows(self, key: str) -> str:
        value = self.extra.get("work", {}).get(key)
        return "-" if value is None else f"{int(value)}"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


@contextlib.contextmanager
def heartbeat(label: str, every: float) -> Iterator[None]:
    """Print ``label ... still running`` every ``every`` seconds (long CPU runs)."""
    stop = threading.Event()
    start = time.perf_counter()

    def beat() -> None:
        while not stop.wait(every):
            log(f"  {label}: still running ({time.perf_counter() - start:.0f} s)")

    thread = threading.Thread(target=beat, daemon=True)
    if every > 0:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measure(fn: Callable[[], Any], device: str, label: str, every: float) -> tuple[float, float | None, Any]:
    """Run ``fn`` once: wall seconds, peak CUDA memory (MiB) and its result."""
    if device == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats()
    with heartbeat(label, every):
        start = time.perf_counter()
        result = fn()
        sync(device)
        seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
    return seconds, peak, result


def continuation_of(tokenizer: Any, n_tokens: int) -> str:
    """The first ``n_tokens`` tokens of :data:`CONTINUATION`, checked to re-tokenise exactly."""
    ids = tokenizer(CONTINUATION, add_special_tokens=False)["input_ids"]
    if n_tokens > len(ids):
        sys.exit(f"--tokens {n_tokens}: the fixed continuation has only {len(ids)} tokens")
    text = tokenizer.decode(ids[:n_tokens])
    prompt_ids = tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    joint = tokenizer(PROMPT + text, add_special_tokens=False)["input_ids"]
    if joint != prompt_ids + ids[:n_tokens]:
        sys.exit("the continuation does not re-tokenise to the same ids after the prompt; pick another --tokens")
    return text


def run_case(
    library: str,
    method: str,
    call: Callable[[str], Any],
    count_steps: Callable[[Any], int],
    args: argparse.Namespace,
    text: str,
    warm_text: str,
) -> Result:
    label = f"{method} / {library}"
    if args.warmup != "none":
        warm = text if args.warmup == "full" else warm_text
        seconds, _, _ = measure(lambda: call(warm), args.device, f"{label} warm-up", args.heartbeat)
        log(f"{label}: warm-up done in {seconds:.2f} s (not counted)")
    runs, peaks, steps = [], [], None
    for r in range(args.repeats):
        log(f"{label}: timed run {r + 1}/{args.repeats} ({args.tokens} tokens) ...")
        seconds, peak, out = measure(lambda: call(text), args.device, label, args.heartbeat)
        runs.append(seconds)
        if peak is not None:
            peaks.append(peak)
        steps = count_steps(out)
        log(f"{label}: {seconds:.2f} s, {args.tokens / seconds:.2f} tokens/s, {steps} steps attributed")
    extra = (
        {"timings": dict(out.provenance.timings), "work": dict(out.provenance.work)}
        if hasattr(out, "provenance")
        else {}
    )
    return Result(
        method, library, args.tokens, statistics.median(runs), runs, max(peaks) if peaks else None, steps, extra
    )


def bench_genattrib(model: Any, args: argparse.Namespace, text: str, warm_text: str) -> list[Result]:
    results = []
    for method in args.methods:
        params = method_params(method, args)

        def call(target: str, method: str = method, params: dict = params) -> Any:
            return model.attribute(PROMPT, target=target, method=method, attributed_fn=ATTRIBUTED_FN, **params)

        results.append(
            run_case("genattrib", method, call, lambda out: out.sequences[0].num_steps, args, text, warm_text)
        )
    return results


def method_params(method: str, args: argparse.Namespace) -> dict[str, Any]:
    """genattrib parameters of ``method`` from the command line (defaults otherwise)."""
    if method in ("integrated_gradients", "sequential_integrated_gradients"):
        return {"n_steps": args.n_steps}
    if method in PATH_METHODS and args.n_anchors is not None:
        return {"n_anchors": args.n_anchors}
    return {}


def bench_inseq(model: Any, args: argparse.Namespace, text: str, warm_text: str) -> list[Result]:
    import inseq

    results = []
    for method in (m for m in args.methods if m in METHODS):
        # Inseq sets padding side and pad token on the tokenizer it gets: give it its own copy.
        inseq_model = inseq.load_model(
            model.model, method, tokenizer=copy.deepcopy(model.tokenizer), device=args.device
        )
        params = (
            {"n_steps": args.n_steps, "internal_batch_size": args.n_steps} if method == "integrated_gradients" else {}
        )

        def call(target: str, inseq_model: Any = inseq_model, params: dict = params) -> Any:
            return inseq_model.attribute(
                PROMPT, generated_texts=PROMPT + target, attributed_fn=ATTRIBUTED_FN, show_progress=False, **params
            )

        def count_steps(out: Any) -> int:
            seq = out.sequence_attributions[0]
            return len(seq.target) - len(seq.source)

        results.append(run_case("inseq", method, call, count_steps, args, text, warm_text))
    return results


def print_table(results: list[Result], title: str) -> None:
    by_key = {(r.method, r.library): r for r in results}
    rows = []
    for r in results:
        speedup = ""
        other = by_key.get((r.method, "inseq"))
        if r.library == "genattrib" and other is not None:
            speedup = f"{other.seconds / r.seconds:.1f}x"
        peak = f"{r.peak_mib:.0f}" if r.peak_mib is not None else "-"
        rows.append(
            (
                r.method,
                r.library,
                f"{r.seconds:.2f}",
                f"{r.tokens_per_s:.2f}",
                f"{r.seconds_per_token:.2f}",
                r.rows("grad_rows"),
                r.rows("rows"),
                peak,
                speedup,
            )
        )
    headers = (
        "method",
        "library",
        "seconds",
        "tokens/s",
        "s/token",
        "fwd+bwd rows",
        "all rows",
        "peak GPU MiB",
        "speed-up",
    )
    try:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title)
        for h in headers:
            table.add_column(h, justify="left" if h in ("method", "library") else "right", no_wrap=True)
        for row in rows:
            table.add_row(*row)
        console = Console()
        if not console.is_terminal:  # logs and CI: do not squeeze the table into 80 columns
            console = Console(width=160)
        console.print(table)
    except ImportError:
        print(title)
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
        for row in (headers, *rows):
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    print("speed-up = Inseq seconds / genattrib seconds for the same method and tokens")


def environment(args: argparse.Namespace) -> dict[str, Any]:
    import transformers

    import genattrib

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "genattrib": getattr(genattrib, "__version__", "?"),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": args.device,
        "device_name": torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu",
    }
    if not args.skip_inseq:
        import inseq

        env["inseq"] = getattr(inseq, "__version__", None) or _dist_version("inseq")
        env["captum"] = _dist_version("captum")
    return env


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--methods",
        nargs="+",
        default=list(METHODS),
        choices=METHODS + PATH_METHODS,
        help="methods to time (default: saliency and IG; the path methods are genattrib only)",
    )
    parser.add_argument("--tokens", type=int, default=55, help="forced continuation length, 1-55 (default 55)")
    parser.add_argument("--n-steps", type=int, default=50, help="integration steps for IG and SIG (default 50)")
    parser.add_argument("--n-anchors", type=int, default=None, help="anchors for DIG/UDIG (default: the method's, 30)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--skip-inseq", action="store_true", help="time genattrib only")
    parser.add_argument(
        "--warmup",
        choices=("short", "full", "none"),
        default="short",
        help="untimed warm-up per case: short prefix (default), the full call, or none",
    )
    parser.add_argument("--repeats", type=int, default=1, help="timed calls per case; the median is reported")
    parser.add_argument("--heartbeat", type=float, default=60.0, help="seconds between progress lines (0: off)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if not 1 <= args.tokens <= 55:
        parser.error("--tokens must be between 1 and 55")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.skip_inseq:
        try:
            import inseq  # noqa: F401
        except ImportError as error:
            sys.exit(f"Inseq is not importable ({error}); run `nox -s bench` or pass --skip-inseq")
    import genattrib

    torch.manual_seed(0)
    dtype = getattr(torch, args.dtype)
    log(f"loading the default model ({args.dtype}, {args.device}) ...")
    start = time.perf_counter()
    model = genattrib.load_model(dtype=dtype, device_map=args.device if args.device == "cuda" else None)
    log(f"loaded in {time.perf_counter() - start:.1f} s")

    text = continuation_of(model.tokenizer, args.tokens)
    warm_text = continuation_of(model.tokenizer, min(4, args.tokens))
    log(f"prompt: {PROMPT!r}")
    log(f"forced continuation ({args.tokens} tokens): {text!r}")

    results = bench_genattrib(model, args, text, warm_text)
    if not args.skip_inseq:
        results += bench_inseq(model, args, text, warm_text)

    env = environment(args)
    title = (
        f"{args.tokens} forced tokens, {args.device} ({env['device_name']}), {args.dtype}, "
        f"attributed fn: {ATTRIBUTED_FN}, IG/SIG n_steps={args.n_steps}"
        + (f", DIG/UDIG n_anchors={args.n_anchors}" if args.n_anchors is not None else "")
    )
    print_table(results, title)
    for r in results:
        if r.attributed_steps is not None and r.attributed_steps != args.tokens:
            log(f"WARNING: {r.library} attributed {r.attributed_steps} steps for {r.method}, expected {args.tokens}")

    if args.json:
        doc = {
            "prompt": PROMPT,
            "continuation": text,
            "config": {k: v for k, v in vars(args).items() if k != "json"},
            "attributed_fn": ATTRIBUTED_FN,
            "environment": env,
            "results": [
                {**asdict(r), "tokens_per_s": r.tokens_per_s, "seconds_per_token": r.seconds_per_token} for r in results
            ],
        }
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(doc, handle, indent=2)
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
