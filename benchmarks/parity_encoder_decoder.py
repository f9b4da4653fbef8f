"""genattrib vs Inseq 0.7.1 on tiny encoder-decoder models (T5 and Marian built from configs): the
same model object, the same forced target, source and target-prefix scores compared per row.

Usage: ``python benchmarks/parity_encoder_decoder.py [--fast]`` (in the bench venv, where Inseq is
installed; ``nox -s parity`` runs every ``benchmarks/parity_*.py``). One row per (family, method,
side): the largest |Δ| relative to each row's largest |score| and the smallest per-row cosine.
Exits 1 when a row disagrees beyond max|Δ| ≤ 1e-4 of the row's scale or cosine ≥ 0.9999 (unless
listed in ``INTENDED`` with its reason).

Settings that make the two definitions the same: ``attributed_fn="probability"`` (Inseq's default),
``attribute_prefix=True`` / ``attribute_target=True``, ``attribute_special_tokens=True`` (Inseq
attributes special tokens), the UNK baseline (both libraries' default), scores summed over the hidden
dimension for gradient methods (Inseq returns them per hidden unit).
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "helpers"))

from tiny_seq2seq import make_seq2seq_model, make_seq2seq_tokenizer  # noqa: E402

import genattrib  # noqa: E402

SOURCE = "The capital of France is"
TARGET = "Paris is the capital"
TOLERANCE, MIN_COSINE = 1e-4, 0.9999
INTENDED: dict[tuple[str, str], str] = {}


def _compare(ours: torch.Tensor, theirs: torch.Tensor) -> tuple[float, float]:
    """(max |Δ| / row scale, min row cosine) over rows, NaN (not attributed) cells left out."""
    worst, cosine = 0.0, 1.0
    for a, b in zip(ours.float(), theirs.float()):
        keep = ~(torch.isnan(a) | torch.isnan(b))
        a, b = a[keep], b[keep]
        if a.numel() == 0:
            continue
        scale = max(float(a.abs().max()), float(b.abs().max()), 1e-30)
        worst = max(worst, float((a - b).abs().max()) / scale)
        cosine = min(cosine, float(torch.nn.functional.cosine_similarity(a, b, dim=0, eps=1e-30)))
    return worst, cosine


def _inseq_sides(out, reduction: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Inseq's source and target scores as (step, position) matrices."""
    seq = out.sequence_attributions[0]

    def reduce(raw: torch.Tensor) -> torch.Tensor:
        raw = raw.float().transpose(0, 1)  # step, position, ...
        if reduction == "sum":
            return raw.sum(-1)
        if reduction == "mean":
            return raw.mean(-1).mean(-1)
        return raw

    return reduce(seq.source_attributions), reduce(seq.target_attributions)


def run(kind: str, method: str, n_steps: int) -> list[tuple[str, float, float]]:
    import inseq

    tok = make_seq2seq_tokenizer()
    hf = make_seq2seq_model(kind, tok)
    ours_model = genattrib.load_model((hf, tok))
    params = {"n_steps": n_steps} if method == "integrated_gradients" else {}
    reduction = {"attention": "mean", "occlusion": "abs"}.get(method, "sum")
    ours = ours_model.attribute(
        SOURCE,
        TARGET,
        method=method,
        attributed_fn="probability",
        attribute_prefix=True,
        attribute_special_tokens=True,
        **params,
    ).sequences[0]
    theirs_model = inseq.load_model(hf, method, tokenizer=copy.deepcopy(tok))
    extra = {"internal_batch_size": n_steps} if method == "integrated_gradients" else {}
    out = theirs_model.attribute(
        SOURCE, generated_texts=TARGET, attribute_target=True, show_progress=False, **params, **extra
    )
    source, target = _inseq_sides(out, reduction)
    rows = []
    for side, mine, their in (("source", ours.source_scores, source), ("target", ours.target_scores, target)):
        if reduction == "abs":
            mine = mine.abs()
        steps = min(mine.shape[0], their.shape[0])
        width = min(mine.shape[1], their.shape[1])
        rows.append((side, *_compare(mine[:steps, :width], their[:steps, :width])))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="the CI subset: one family, fewer IG steps")
    parser.add_argument("--n-steps", type=int, default=None)
    args, _ = parser.parse_known_args()
    torch.set_num_threads(1)
    families = ["marian"] if args.fast else ["t5", "marian"]
    n_steps = args.n_steps or (16 if args.fast else 50)
    failed = False
    print(f"{'family':8} {'method':22} {'side':7} {'max|Δ|/scale':>13} {'min cosine':>11}  verdict")
    for kind in families:
        for method in ("input_x_gradient", "saliency", "integrated_gradients"):
            for side, delta, cosine in run(kind, method, n_steps):
                ok = delta <= TOLERANCE or cosine >= MIN_COSINE
                reason = INTENDED.get((method, side))
                verdict = "ok" if ok else f"intended: {reason}" if reason else "DISAGREES"
                failed |= not ok and reason is None
                print(f"{kind:8} {method:22} {side:7} {delta:13.2e} {cosine:11.6f}  {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
