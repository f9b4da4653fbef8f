"""Project long-form costs to bigger models and longer texts from FLOP counts (no model runs).

A forward row of L tokens costs ``2 P L + 4 n_layers d L²`` FLOPs (weights, then attention
scores and mixing without the causal halving: an upper bound); a forward+backward row three
times that. Per method, for T generated tokens after a prompt of P0 tokens:

- token-level gradients: one forward+backward row per token, of length P0 + t;
- sentence-level gradients: one per sentence (``--sentence`` tokens each), of its start length;
- sentence-source occlusion: U + 1 forward rows of the full length (U prompt sentences);
- context ablation: ``--samples`` + 1 forward rows of the full length.

Seconds assume a sustained ``--tflops`` (default 400: about 40% of an H100/H200's dense bf16
peak). Memory is the weights plus one forward+backward row's activations (bf16, every layer kept for
the backward pass: ``~34 L d`` bytes per layer with SDPA/flash attention, plus ``5 heads L²``
with eager attention, which stores the score matrix).

    python benchmarks/longform_flops.py                       # 7B, 8k and 32k tokens
    python benchmarks/longform_flops.py --params 135e6 --layers 30 --hidden 576 --heads 9 --tflops 0.05
"""

from __future__ import annotations

import argparse


def forward_flops(params: float, layers: int, hidden: int, length: int) -> float:
    return 2 * params * length + 4 * layers * hidden * length**2


def costs(args: argparse.Namespace, generated: int) -> dict[str, float]:
    """FLOPs of each method for ``generated`` tokens after the prompt."""
    f = lambda n: forward_flops(args.params, args.layers, args.hidden, n)  # noqa: E731
    total = args.prompt + generated
    return {
        "token-level gradients": sum(3 * f(args.prompt + t) for t in range(generated)),
        "sentence-level gradients": sum(3 * f(args.prompt + t) for t in range(0, generated, args.sentence)),
        "sentence-source occlusion": (args.units + 1) * f(total),
        "context ablation": (args.samples + 1) * f(total),
    }


def activation_bytes(args: argparse.Namespace, length: int) -> tuple[float, float]:
    """Activations one forward+backward row keeps in bf16: (with SDPA/flash attention, which
    never stores the score matrix; the extra for eager attention's stored scores)."""
    return args.layers * 34 * length * args.hidden, args.layers * 5 * args.heads * length**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=float, default=6.7e9)
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=4096)
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--prompt", type=int, default=500, help="prompt tokens")
    parser.add_argument("--units", type=int, default=20, help="prompt sentences (source units)")
    parser.add_argument("--sentence", type=int, default=20, help="tokens per generated sentence")
    parser.add_argument("--samples", type=int, default=64, help="context-ablation samples")
    parser.add_argument("--tflops", type=float, default=400.0, help="sustained TFLOP/s")
    parser.add_argument("--lengths", type=int, nargs="+", default=[2048, 8192, 32768])
    args = parser.parse_args()
    print(f"| method | {' | '.join(f'{n:,} tokens' for n in args.lengths)} |")
    print("|---|" + "---|" * len(args.lengths))
    table = {n: costs(args, n) for n in args.lengths}
    for name in table[args.lengths[0]]:
        cells = []
        for n in args.lengths:
            flops = table[n][name]
            seconds = flops / (args.tflops * 1e12)
            cells.append(f"{flops:.2e} FLOPs, {_duration(seconds)}")
        print(f"| {name} | {' | '.join(cells)} |")
    weights = 2 * args.params
    for n in args.lengths:
        act, eager = (b / 2**30 for b in activation_bytes(args, args.prompt + n))
        print(
            f"one forward+backward row at {n:,} tokens: weights {weights / 2**30:.0f} GiB + activations "
            f"{act:.0f} GiB with SDPA/flash attention (eager attention: +{eager:.0f} GiB)"
        )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


if __name__ == "__main__":
    main()
