"""KV reuse vs full rows for occlusion and SIG on the default model, interleaved A,B,A,B,... in one
process (medians), with the rows and tokens each path runs through the model.

Run: ``python benchmarks/bench_kv_reuse.py --threads 1 --tokens 20 --sig-tokens 3 --repeats 3``.
Tokens count every model call: ``rows x positions run`` (a suffix row counts only its suffix).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from unittest import mock

import torch

import genattrib
from genattrib.engine import planner
from genattrib.engine.forward import ModelForward

#: The planner's reuse threshold for each mode: suffixes always, never, or as the planner decides.
THRESHOLDS = {"always": math.inf, "never": -math.inf, "auto": planner.WORTH_IT}
PROMPT = "The bicycle was invented in the early nineteenth century, and"


def _counted(model, mode: str, **kwargs) -> tuple[float, dict[str, int], object]:
    tokens = [0, 0]
    original = ModelForward.hidden_states

    def spy(self, embeds, **kw):
        tokens[0] += int(embeds.shape[0] * embeds.shape[1])
        tokens[1] += int(torch.is_grad_enabled()) * int(embeds.shape[0] * embeds.shape[1])
        return original(self, embeds, **kw)

    ModelForward.hidden_states = spy
    try:
        with mock.patch.object(planner, "WORTH_IT", THRESHOLDS[mode]):
            start = time.perf_counter()
            out = model.attribute(PROMPT, **kwargs)
            seconds = time.perf_counter() - start
    finally:
        ModelForward.hidden_states = original
    work = dict(out.provenance.work)
    return seconds, {**work, "tokens": tokens[0], "grad_tokens": tokens[1]}, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--sig-tokens", type=int, default=3)
    parser.add_argument("--n-steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = genattrib.load_model()
    generated = model.attribute(PROMPT, method="occlusion", max_new_tokens=args.tokens).sequences[0]
    answer = generated.generated_text
    ids = model.tokenizer(answer, add_special_tokens=False)["input_ids"]
    sig_answer = model.tokenizer.decode(ids[: args.sig_tokens])
    cases = {
        f"occlusion ({len(ids)} tokens)": dict(target=answer, method="occlusion"),
        f"sig n_steps={args.n_steps} ({args.sig_tokens} tokens)": dict(
            target=sig_answer, method="sequential_integrated_gradients", n_steps=args.n_steps
        ),
    }
    print(f"prompt {PROMPT!r}, answer {answer!r}, threads {torch.get_num_threads()}")
    for name, kwargs in cases.items():
        times: dict[str, list[float]] = {"never": [], "always": []}
        work, outs = {}, {}
        for _ in range(args.repeats):
            for mode in ("never", "always"):
                seconds, work[mode], outs[mode] = _counted(model, mode, **kwargs)
                times[mode].append(seconds)
        a, b = outs["never"].sequences[0], outs["always"].sequences[0]
        diff = float((a.scores - b.scores).abs().nan_to_num(0).max())
        full, reuse = statistics.median(times["never"]), statistics.median(times["always"])
        print(f"{name}: full {full:.2f}s, reuse {reuse:.2f}s, speed-up {full / reuse:.2f}x, max |diff| {diff:.1e}")
        for mode in ("never", "always"):
            print(f"  {mode:6s} times {[round(t, 2) for t in times[mode]]} work {work[mode]}")
        ratio = work["never"]["tokens"] / max(1, work["always"]["tokens"])
        print(f"  tokens ratio {ratio:.2f}x")


if __name__ == "__main__":
    main()
