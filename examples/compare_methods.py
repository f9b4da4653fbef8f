"""Compare methods on one forced continuation: which prompt tokens explain " Paris"?

Every method explains the same forced target, so the rows line up. Scores are not comparable in
size across methods (different units); the ranking of source positions is.

    python examples/compare_methods.py
"""

from __future__ import annotations

import torch

import genattrib

PROMPT = "The capital of France is"
TARGET = " Paris, the city of light."
METHODS = {
    "saliency": {},
    "input_x_gradient": {},
    "integrated_gradients": {"n_steps": 32},
    "gradient_shap": {"seed": 0},
    "occlusion": {},
    "attention": {},
    "rollout": {},
}


def top_sources(scores: torch.Tensor, tokens: list[str], k: int = 3) -> str:
    """The ``k`` source tokens with the largest |score| (NaN positions skipped)."""
    magnitude = scores.abs().nan_to_num(nan=-1.0)  # NaN = positions at/after the target
    best = magnitude.topk(min(k, int((magnitude >= 0).sum()))).indices.tolist()
    return ", ".join(f"{tokens[i]!r} {scores[i].item():+.3g}" for i in best)


def main() -> None:
    model = genattrib.load_model()
    print(f"{PROMPT!r} + forced {TARGET!r}; first generated token explained, top 3 sources:\n")
    for method, params in METHODS.items():
        out = model.attribute(PROMPT, target=TARGET, method=method, **params)
        seq = out.sequences[0]
        row = seq.scores[0]  # the first generated token, " Paris"
        seconds = out.provenance.timings["total"]
        print(f"{method:>22} ({seconds:5.2f} s): {top_sources(row, seq.tokens)}")


if __name__ == "__main__":
    main()
