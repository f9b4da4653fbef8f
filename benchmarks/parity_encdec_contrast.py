"""genattrib vs Inseq 0.7.1: contrastive step functions on a tiny encoder-decoder model (T5 built from
a config), with a contrast source (Inseq's ``contrast_sources``, genattrib's ``contrast_prompt``), a
contrast target (``contrast_targets`` / ``contrast_continuation``) and both.

Usage: ``python benchmarks/parity_encdec_contrast.py [--fast]`` (in the parity venv, where Inseq is
installed; ``nox -s parity`` runs every ``benchmarks/parity_*.py``; the whole script is small, so
``--fast`` changes nothing). One row per (contrast, step function): the largest |Δ| relative to the
row's largest |score| and the cosine. Exits 1 when a row disagrees beyond max|Δ| ≤ 1e-4 of the row's
scale or cosine ≥ 0.9999.
"""

from __future__ import annotations

import argparse
import copy
import sys
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "helpers"))

from tiny_seq2seq import make_seq2seq_model, make_seq2seq_tokenizer  # noqa: E402

import genattrib  # noqa: E402

SOURCE = "The capital of France is"
TARGET = "Paris is the capital"
CONTRAST_SOURCE = "The capital of Italy is often said to be"  # another length: its own encoder pass
CONTRAST_TARGET = "Rome is the capital"
STEPS = ["contrast_logits", "contrast_prob", "contrast_logits_diff", "pcxmi", "kl_divergence", "in_context_pvi"]
TOLERANCE, MIN_COSINE = 1e-4, 0.9999


def agreement(ours: torch.Tensor, theirs: torch.Tensor) -> tuple[float, float]:
    """(max |Δ| / the row's largest |value|, cosine) of two step-score rows."""
    a, b = ours.double().flatten(), theirs.double().flatten()
    scale = max(float(a.abs().max()), float(b.abs().max()), 1e-30)
    return float((a - b).abs().max()) / scale, float(torch.nn.functional.cosine_similarity(a, b, dim=0, eps=1e-30))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="accepted for nox -s parity; the script is small")
    parser.parse_known_args()
    torch.set_num_threads(1)
    import inseq

    tok = make_seq2seq_tokenizer()
    hf = make_seq2seq_model("t5", tok)
    ours_model = genattrib.load_model((hf, tok))
    theirs_model = inseq.load_model(hf, "saliency", tokenizer=copy.deepcopy(tok))
    cases = {
        "contrast source": ({"contrast_prompt": CONTRAST_SOURCE}, {"contrast_sources": CONTRAST_SOURCE}),
        "contrast target": ({"contrast_continuation": CONTRAST_TARGET}, {"contrast_targets": CONTRAST_TARGET}),
        "both": (
            {"contrast_prompt": CONTRAST_SOURCE, "contrast_continuation": CONTRAST_TARGET},
            {"contrast_sources": CONTRAST_SOURCE, "contrast_targets": CONTRAST_TARGET},
        ),
    }
    failed = False
    print(f"{'contrast':16} {'step function':22} {'max|Δ|/scale':>13} {'cosine':>9}  verdict")
    for label, (ours_kw, their_kw) in cases.items():
        ours = ours_model.attribute(SOURCE, TARGET, method="saliency", step_scores=STEPS, **ours_kw).sequences[0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = theirs_model.attribute(
                SOURCE, generated_texts=TARGET, step_scores=STEPS, show_progress=False, **their_kw
            )
        theirs = out.sequence_attributions[0].step_scores
        for name in STEPS:
            mine, their = ours.step_scores[name].float(), theirs[name].float()
            if mine.shape != their.shape:
                print(f"{label:16} {name:22} shapes {tuple(mine.shape)} vs {tuple(their.shape)}  DISAGREES")
                failed = True
                continue
            delta, cosine = agreement(mine, their)
            ok = delta <= TOLERANCE or cosine >= MIN_COSINE
            failed |= not ok
            print(f"{label:16} {name:22} {delta:13.2e} {cosine:9.6f}  {'ok' if ok else 'DISAGREES'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
