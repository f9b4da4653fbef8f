"""Shared pieces of ``bench_vs_inseq.py``: the fixed text, the method table, timing, FLOPs, the table.

Nothing here imports Inseq (see ``inseq_runner.py``), so the genattrib-only paths run without it.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

PROMPT = "The bicycle was invented in the early nineteenth century, and"
CONTINUATION = (  # 55 SmolLM2 tokens; checked at run time
    " within a few decades it had changed how people travelled to work, visited friends and explored"
    " the countryside. Early machines were heavy and hard to steer, but the safety bicycle of the 1880s,"
    " with two equal wheels and a chain drive, made cycling popular."
)
ATTRIBUTED_FN = "probability"  # Inseq's default; genattrib's default is logprob (same cost)


@dataclass(frozen=True)
class Spec:
    """One method in both libraries: parameters (from the command line) and the score reduction.

    ``reduction`` turns Inseq's raw (position, step, ...) tensor into genattrib's (step, position)
    ``scores`` with genattrib's default reduction: ``l2``/``sum`` over the hidden size, ``mean`` over
    layers and heads (attention), ``abs`` compares |scores| (Inseq's occlusion returns |Δ|),
    ``None``: the method is stochastic and no difference is reported.
    """

    genattrib: Callable[[Any], dict[str, Any]]
    inseq: Callable[[Any], dict[str, Any]] = lambda a: {}
    reduction: str | None = "sum"


SPECS: dict[str, Spec] = {
    "saliency": Spec(lambda a: {}, reduction="l2"),  # captum: |grad|, genattrib: grad; the L2 norm is the same
    "input_x_gradient": Spec(lambda a: {}),
    "integrated_gradients": Spec(
        lambda a: {"n_steps": a.n_steps}, lambda a: {"n_steps": a.n_steps, "internal_batch_size": a.n_steps}
    ),
    "gradient_shap": Spec(lambda a: {"n_samples": a.n_samples}, lambda a: {"n_samples": a.n_samples}, reduction=None),
    "occlusion": Spec(lambda a: {}, reduction="abs"),
    "lime": Spec(  # Inseq masks each token with p=0.3 (its default): genattrib keeps it with p=0.7
        lambda a: {"n_samples": a.n_samples, "keep_prob": 0.7}, lambda a: {"n_samples": a.n_samples}, reduction=None
    ),
    "sequential_integrated_gradients": Spec(
        lambda a: {"n_steps": a.n_steps}, lambda a: {"n_steps": a.n_steps, "internal_batch_size": a.n_steps}
    ),
    "discretized_integrated_gradients": Spec(  # Inseq's n_steps is the number of anchors (30, greedy)
        lambda a: {"n_anchors": a.n_anchors, "strategy": "greedy"},
        lambda a: {"n_steps": a.n_anchors + 2},  # Inseq: n_steps points (word, anchors, baseline); greedy default
    ),
    "attention": Spec(lambda a: {}, reduction="mean"),  # mean over heads, then layers (genattrib's default)
    # at the embeddings (the default), with the UNK token as baseline in both; Inseq 0.7.1 scores 0 on
    # decoder-only models (its target-side baseline ids are the input ids: docs/methods.md), so the
    # score column shows that difference, not an error
    "layer_integrated_gradients": Spec(
        lambda a: {"n_steps": a.n_steps}, lambda a: {"n_steps": a.n_steps, "internal_batch_size": a.n_steps}
    ),
    # Inseq 0.7.1 runs with its block hook fixed for tensor block outputs (inseq_runner.tensor_block_outputs)
    "value_zeroing": Spec(lambda a: {}, reduction="layer_mean"),
}
EXTRA_METHODS = (  # genattrib only (Inseq 0.7.1 has reagent, but its POS-tag sampler needs NLTK data)
    "reagent",
    "rpi",
    "context_ablation",
    "uniform_discretized_integrated_gradients",
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


@dataclass
class Run:
    wall: float
    cpu: float


def timed(fn: Callable[[], Any], device: str) -> tuple[Run, Any]:
    """Wall time (``perf_counter``) and process CPU time (``process_time``) of one call."""
    sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    sync(device)
    return Run(time.perf_counter() - wall, time.process_time() - cpu), result


@dataclass
class Case:
    """All timed runs of one (library, method), plus its one-shot memory and score figures."""

    method: str
    library: str
    runs: list[Run] = field(default_factory=list)
    warmup: Run | None = None
    memory: dict[str, Any] = field(default_factory=dict)
    steps: int | None = None
    work: dict[str, Any] = field(default_factory=dict)  # genattrib: provenance.work (model rows) of a run

    def stat(self, what: str, how: Callable) -> float:
        return how([getattr(r, what) for r in self.runs]) if self.runs else math.nan

    def summary(self) -> dict[str, float]:
        return {f"{w}_{h.__name__}": self.stat(w, h) for w in ("wall", "cpu") for h in (statistics.median, min)}


def continuation_of(tokenizer: Any, n_tokens: int | None) -> tuple[str, int]:
    """The first ``n_tokens`` tokens of :data:`CONTINUATION` (all: None), checked to re-tokenise exactly."""
    ids = tokenizer(CONTINUATION, add_special_tokens=False)["input_ids"]
    n_tokens = len(ids) if n_tokens is None else n_tokens
    if not 1 <= n_tokens <= len(ids):
        sys.exit(f"--tokens {n_tokens}: the fixed continuation has {len(ids)} tokens with this tokenizer")
    text = tokenizer.decode(ids[:n_tokens])
    prompt_ids = tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    joint = tokenizer(PROMPT + text, add_special_tokens=False)["input_ids"]
    if joint != prompt_ids + ids[:n_tokens]:
        sys.exit("the continuation does not re-tokenise to the same ids after the prompt; pick another --tokens")
    return text, n_tokens


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float | str:
    """max |a - b| over the cells where both are finite; a mismatch of shapes or NaN patterns is said."""
    if a.shape != b.shape:
        return f"shapes {tuple(a.shape)} vs {tuple(b.shape)}"
    a, b = a.double().cpu(), b.double().cpu()
    if not torch.equal(a.isnan(), b.isnan()):
        return "NaN cells differ"
    both = ~a.isnan()
    return float((a[both] - b[both]).abs().max()) if both.any() else 0.0


# --- FLOPs of IG ------------------------------------------------------------------------------
def ig_flops(config: Any, n_body_params: int, prefix_lengths: list[int], n_steps: int) -> float:
    """Useful FLOPs of one IG call: ``n_steps`` forward + input-gradient backward rows per target.

    A row explaining a target at position ``L`` runs the model on the ``L`` tokens before it:

    - forward, dense layers: ``2 · P · L`` (``P``: parameters outside the embedding and LM head)
    - forward, attention scores and values, causal: ``2 · n_layers · L² · d_attn``
      (``QKᵀ`` and ``AV`` each ``2 · L² · d_attn``, half of it masked)
    - LM head on the target position only: ``2 · d · V``
    - backward to the inputs only (no weight gradients, ``dX = dY · Wᵀ``): the same again for the
      dense layers and the LM head, twice the forward for attention (gradients of both operands)

    so ``row = 2·(2PL + 2dV) + 3·(2·n_layers·L²·d_attn)``. Padding, the forward-only rows of
    F(x) and F(baseline), and elementwise work (norms, activations, softmax) are not counted:
    the figure is the work both libraries must do, whatever they run in addition.
    """
    n_layers, hidden = config.num_hidden_layers, config.hidden_size
    heads = config.num_attention_heads
    d_attn = heads * (getattr(config, "head_dim", None) or hidden // heads)
    vocab = config.vocab_size
    total = 0.0
    for length in prefix_lengths:
        dense = 2 * n_body_params * length + 2 * hidden * vocab
        attention = 2 * n_layers * length**2 * d_attn
        total += 2 * dense + 3 * attention
    return total * n_steps


def body_params(hf_model: Any) -> int:
    """Parameters outside the input embedding and the LM head (counted once when tied)."""
    skip = {id(p) for p in hf_model.get_input_embeddings().parameters()}
    head = hf_model.get_output_embeddings()
    if head is not None:
        skip |= {id(p) for p in head.parameters()}
    return sum(p.numel() for p in hf_model.parameters() if id(p) not in skip)


def matmul_throughput(device: str, dtype: torch.dtype, size: int | None = None, repeats: int = 5) -> float:
    """Best FLOP/s of a square ``size × size`` matmul in ``dtype`` on ``device`` (``2·n³`` FLOPs)."""
    size = size or (8192 if device == "cuda" else 1024)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    torch.matmul(a, b)  # warm-up
    best = math.inf
    for _ in range(repeats):
        run, _ = timed(lambda: torch.matmul(a, b), device)
        best = min(best, run.wall)
    return 2 * size**3 / best


# --- the table -----------------------------------------------------------------------------
def _pair(cases: dict[tuple[str, str], Case], method: str) -> tuple[Case | None, Case | None]:
    return cases.get((method, "genattrib")), cases.get((method, "inseq"))


def _memory(case: Case | None) -> str:
    if case is None or not case.memory:
        return "-"
    m = case.memory
    if "cuda_peak_mb" in m:
        return f"{m['cuda_peak_mb']:.0f} (+{m['cuda_peak_mb'] - m['cuda_after_load_mb']:.0f})"
    return f"{m['peak_rss_mb']:.0f} (+{m['peak_rss_mb'] - m['rss_after_load_mb']:.0f})"


def table(cases: dict[tuple[str, str], Case], methods: list[str], diffs: dict[str, Any], cuda: bool) -> str:
    memory = "peak GPU alloc MB (+ over load)" if cuda else "peak RSS MB (+ over load)"
    headers = [
        "method",
        "genattrib median s (min)",
        "Inseq median s (min)",
        "ratio (median, min)",
        "CPU-time ratio (median, min)",
        f"{memory} genattrib / Inseq",
        "max |Δscore|",
    ]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for method in methods:
        ga, inseq = _pair(cases, method)
        cells = [method]
        for case in (ga, inseq):
            cells.append(
                "-"
                if case is None or not case.runs
                else f"{case.stat('wall', statistics.median):.3f} ({case.stat('wall', min):.3f})"
            )
        for what in ("wall", "cpu"):
            if ga is None or inseq is None or not ga.runs or not inseq.runs:
                cells.append("-")
                continue
            med = inseq.stat(what, statistics.median) / ga.stat(what, statistics.median)
            cells.append(f"{med:.2f}× ({inseq.stat(what, min) / ga.stat(what, min):.2f}×)")
        cells.append(f"{_memory(ga)} / {_memory(inseq)}")
        diff = diffs.get(method, "-")
        cells.append(f"{diff:.2e}" if isinstance(diff, float) else str(diff))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
