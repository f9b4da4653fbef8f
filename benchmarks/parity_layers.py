"""Parity of layer attribution, DeepLIFT and value zeroing with Inseq 0.7.1, on the same model object.

Runs ``layer_integrated_gradients``, ``layer_gradient_x_activation``, ``deeplift``,
``layer_deeplift`` and ``value_zeroing`` in both libraries on genattrib's default model (or a
tiny Llama with ``--tiny``), prints one row per method with the largest |Δ| relative to each
row's largest |score| and the smallest per-row cosine, and exits non-zero on a disagreement
beyond 1e-4 of the row scale (unless cosine ≥ 0.9999), except the rows listed in
``INTENDED`` with their reason. ``--fast``: a short continuation and fewer steps (CI).

    python benchmarks/parity_layers.py [--fast] [--tiny]
"""

from __future__ import annotations

import argparse
import copy
import sys
from typing import Any

import torch

PROMPT = "The capital of France is"
CONTINUATION = " Paris. It is known for the Eiffel Tower and its museums."
FAST_CONTINUATION = " Paris. It is known"
ATTRIBUTED_FN = "probability"

#: name -> (genattrib method, genattrib params, Inseq method, Inseq attribute kwargs, reduction of Inseq's last dim)
CASES: dict[str, tuple[str, dict[str, Any], str, dict[str, Any], str]] = {
    "layer_integrated_gradients": ("layer_integrated_gradients", {}, "layer_integrated_gradients", {}, "sum"),
    "layer_gradient_x_activation": ("layer_gradient_x_activation", {}, "layer_gradient_x_activation", {}, "sum"),
    "deeplift (gradient rule)": ("deeplift", {"nonlinearity": "gradient"}, "deeplift", {}, "sum"),
    "deeplift": ("deeplift", {}, "deeplift", {}, "sum"),
    "layer_deeplift (gradient rule)": ("layer_deeplift", {"nonlinearity": "gradient"}, "layer_deeplift", {}, "sum"),
    "value_zeroing": ("value_zeroing", {}, "value_zeroing", {}, "mean"),
    "value_zeroing (last layer)": ("value_zeroing", {"layers": [-1]}, "value_zeroing", {}, "last"),
}
ZERO_BASELINE = (
    "Inseq 0.7.1's layer methods return all-zero scores on these models (Captum's LayerIntegratedGradients / "
    "LayerDeepLift under Inseq's forward return 0 although the baselines it passes are UNK ids; checked: the row "
    "fails if Inseq's scores are not all 0)"
)
INTENDED = {
    "layer_integrated_gradients": ZERO_BASELINE,
    "layer_deeplift (gradient rule)": ZERO_BASELINE,
    "deeplift": "genattrib applies the rescale rule to SiLU/GELU modules; Captum's DeepLift (Inseq) only knows "
    "torch's ReLU/ELU/Sigmoid/Tanh/Softplus classes, so on Hugging Face models it computes plain "
    "gradient x (x - x') (genattrib's nonlinearity='gradient', compared above)",
}

#: Methods Inseq 0.7.1 cannot run on transformers 5 (compared against a by-hand loop in tests/ instead).
INSEQ_FAILS = {
    "value_zeroing": "its block hook concatenates a tuple to the decoder layer's output, a tensor since transformers 5",
    "value_zeroing (last layer)": "as above",
}


def _load(tiny: bool) -> Any:
    import genattrib

    if not tiny:
        return genattrib.load_model()
    sys.path.insert(0, "tests/helpers")
    from tiny import make_model, make_tokenizer

    tok = make_tokenizer()
    return genattrib.load_model((make_model("llama", tok), tok))


def _inseq_matrix(out: Any, reduction: str) -> torch.Tensor:
    raw = out.sequence_attributions[0].target_attributions.float().transpose(0, 1)  # step, position, ...
    if reduction == "sum":
        return raw.sum(-1)
    if reduction == "mean":
        return raw.mean(-1)
    return raw[..., -1]


def _compare(ours: torch.Tensor, theirs: torch.Tensor) -> tuple[float, float]:
    rows = min(ours.shape[0], theirs.shape[0])
    cols = min(ours.shape[1], theirs.shape[1])
    worst, cosine = 0.0, 1.0
    for r in range(rows):
        a, b = ours[r, :cols].nan_to_num(0).double(), theirs[r, :cols].nan_to_num(0).double()
        scale = max(a.abs().max().item(), b.abs().max().item(), 1e-30)
        worst = max(worst, (a - b).abs().max().item() / scale)
        cosine = min(cosine, torch.nn.functional.cosine_similarity(a, b, dim=0).item())
    return worst, cosine


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="a tiny random Llama instead of the default model")
    parser.add_argument("--n-steps", type=int, default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    import inseq

    model = _load(args.tiny)
    continuation = FAST_CONTINUATION if args.fast else CONTINUATION
    n_steps = args.n_steps or (8 if args.fast else 50)
    failed, skipped = [], []
    print(f"{'method':34} {'max|Δ|/scale':>13} {'min cosine':>11}  verdict")
    for label, (ours_name, ours_params, theirs_name, theirs_params, reduction) in CASES.items():
        params = dict(ours_params)
        if label in INSEQ_FAILS and any(f.startswith(label.split(" ")[0]) for f in skipped):
            print(f"{label:34} {'-':>13} {'-':>11}  skipped: Inseq failed on this method above", flush=True)
            continue
        if ours_name == "layer_integrated_gradients":
            params["n_steps"], theirs_params = n_steps, {"n_steps": n_steps, "internal_batch_size": n_steps}
        ours = model.attribute(
            PROMPT, target=continuation, method=ours_name, attributed_fn=ATTRIBUTED_FN, **params
        ).sequences[0]
        inseq_model = inseq.load_model(model.model, theirs_name, tokenizer=copy.deepcopy(model.tokenizer))
        hf = model.model
        previous = getattr(hf.config, "_attn_implementation", "sdpa")
        try:
            theirs = inseq_model.attribute(
                PROMPT,
                generated_texts=PROMPT + continuation,
                attributed_fn=ATTRIBUTED_FN,
                show_progress=False,
                **theirs_params,
            )
        except Exception as error:  # noqa: BLE001 - reported as a row: Inseq cannot run it here
            reason = f"Inseq fails: {type(error).__name__}: {str(error)[:80]}"
            skipped.append(label)
            if label not in INSEQ_FAILS:
                failed.append(label)
            print(f"{label:34} {'-':>13} {'-':>11}  {reason}", flush=True)
            continue
        finally:
            hf.config._attn_implementation = previous
        ours_m = ours.scores[:, : ours.scores.shape[1]].float()
        theirs_m = _inseq_matrix(theirs, reduction)
        worst, cosine = _compare(ours_m, theirs_m)
        ok = worst <= 1e-4 or cosine >= 0.9999
        if label in INTENDED and INTENDED[label] is ZERO_BASELINE and bool(theirs_m.nan_to_num(0).abs().max() > 0):
            failed.append(label)  # the stated reason does not hold
        verdict = "ok" if ok else ("intended: " + INTENDED[label] if label in INTENDED else "DIFFERENT")
        if not ok and label not in INTENDED:
            failed.append(label)
        print(f"{label:34} {worst:13.2e} {cosine:11.6f}  {verdict}", flush=True)
    if failed:
        print("disagreements: " + ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
