"""genattrib vs Inseq 0.7.1 on tiny encoder-decoder models (T5 and Marian built from configs): the
same model object, the same forced target, source and target-prefix scores compared per row.

Usage: ``python benchmarks/parity_encoder_decoder.py [--fast]`` (in the bench venv, where Inseq is
installed; ``nox -s parity`` runs every ``benchmarks/parity_*.py``). One row per (family, method,
side): the largest |Δ| relative to each row's largest |score| and the smallest per-row cosine.
Exits 1 when a row disagrees beyond max|Δ| ≤ 1e-4 of the row's scale or cosine ≥ 0.9999 (unless
listed in ``INTENDED`` with its reason).

Settings that make the two definitions the same: ``attributed_fn="probability"`` (Inseq's default),
``attribute_prefix=True`` / ``attribute_target=True``, the UNK baseline (both libraries' default; the
special tokens, ``</s>`` and the decoder start, stay as they are in both: genattrib holds them fixed,
Inseq keeps them in its baseline), scores summed over the hidden dimension for input x gradient and
integrated gradients and its L2 norm for saliency (Inseq returns them per hidden unit). The
``probability`` row compares the step score itself.
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
MARIAN = (
    "Inseq 0.7.1 multiplies Marian's decoder embeddings by embed_scale and transformers 5 scales "
    "decoder_inputs_embeds again, so Inseq runs another function than the model (its probabilities differ)"
)
INTENDED: dict[tuple[str, str, str], str] = {
    ("marian", method, side): MARIAN
    for method in ("input_x_gradient", "saliency", "integrated_gradients", "attention", "occlusion", "probability")
    for side in ("source", "target", "step")
}


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
        if reduction == "l2":
            return raw.norm(dim=-1)
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
    reduction = {"attention": "mean", "occlusion": "abs", "saliency": "l2"}.get(method, "sum")
    ours = ours_model.attribute(
        SOURCE,
        TARGET,
        method=method,
        attributed_fn="probability",
        attribute_prefix=True,
        step_scores=["probability"] if method == "input_x_gradient" else None,
        **params,
    ).sequences[0]
    theirs_model = inseq.load_model(hf, method, tokenizer=copy.deepcopy(tok))
    extra = {"internal_batch_size": n_steps} if method == "integrated_gradients" else {}
    if method == "attention":  # Inseq reads the weights the model returns: SDPA returns none
        hf.set_attn_implementation("eager")
    out = theirs_model.attribute(
        SOURCE,
        generated_texts=TARGET,
        attribute_target=True,
        step_scores=["probability"] if method == "input_x_gradient" else [],
        show_progress=False,
        **params,
        **extra,
    )
    source, target = _inseq_sides(out, reduction)
    rows = []
    for side, mine, their in (("source", ours.source_scores, source), ("target", ours.target_scores, target)):
        if reduction == "abs":
            mine = mine.abs()
        steps = min(mine.shape[0], their.shape[0])
        width = min(mine.shape[1], their.shape[1])
        rows.append((side, *_compare(mine[:steps, :width], their[:steps, :width])))
    if method == "input_x_gradient":  # the step score, once per family
        their = out.sequence_attributions[0].step_scores["probability"].float()
        rows.append(("step", *_compare(ours.step_scores["probability"][None], their[None])))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="the CI subset: one family, fewer IG steps")
    parser.add_argument("--n-steps", type=int, default=None)
    parser.add_argument("--families", nargs="+", default=None, help="t5, marian (default: both; --fast: t5)")
    args, _ = parser.parse_known_args()
    torch.set_num_threads(1)
    families = args.families or (["t5"] if args.fast else ["t5", "marian"])
    n_steps = args.n_steps or (16 if args.fast else 50)
    failed = False
    print(f"{'family':8} {'method':22} {'side':7} {'max|Δ|/scale':>13} {'min cosine':>11}  verdict")
    for kind in families:
        for method in ("input_x_gradient", "saliency", "integrated_gradients", "attention", "occlusion"):
            for side, delta, cosine in run(kind, method, n_steps):
                ok = delta <= TOLERANCE or cosine >= MIN_COSINE
                reason = INTENDED.get((kind, "probability" if side == "step" else method, side))
                verdict = "ok" if ok else f"intended: {reason}" if reason else "DISAGREES"
                failed |= not ok and reason is None
                name = "probability (step)" if side == "step" else method
                print(f"{kind:8} {name:22} {side:7} {delta:13.2e} {cosine:11.6f}  {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
