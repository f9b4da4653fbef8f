"""Parity of layer attribution, DeepLIFT and value zeroing with Inseq 0.7.1 and Captum 0.9, on the same model object.

Runs ``layer_integrated_gradients``, ``layer_gradient_x_activation``, ``deeplift``,
``layer_deeplift`` and ``value_zeroing`` in both libraries on genattrib's default model (or a
tiny Llama with ``--tiny``), prints one row per method with the largest |Δ| relative to each
row's largest |score| and the smallest per-row cosine, and exits non-zero on a disagreement
beyond 1e-4 of the row scale (unless cosine ≥ 0.9999), except the rows listed in
``INTENDED`` with their reason. Inseq's layer methods run with the fix of
:func:`baseline_ids_reach_the_model` (as shipped they return all zeros: the line above the rows
says whether that still holds). Then Captum's ``LayerIntegratedGradients``, ``LayerDeepLift`` and
``LayerGradientXActivation`` are called directly on the embedding layer and on block 1 (token-id
baselines, Gauss-Legendre, the same ``n_steps``), per generated token. ``--fast``: a short
continuation and fewer steps (CI); ``--only inseq|captum``: one of the two comparisons.

    python benchmarks/parity_layers.py [--fast] [--tiny] [--only inseq|captum]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import sys
from collections.abc import Iterator
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
INTENDED = {
    "deeplift": "genattrib applies the rescale rule to SiLU/GELU modules; Captum's DeepLift (Inseq) only knows "
    "torch's ReLU/ELU/Sigmoid/Tanh/Softplus classes, so on Hugging Face models it computes plain "
    "gradient x (x - x') (genattrib's nonlinearity='gradient', compared above)",
}

#: Methods Inseq 0.7.1 cannot run on transformers 5 (compared against a by-hand loop in tests/ instead).
INSEQ_FAILS = {
    "value_zeroing": "its block hook concatenates a tuple to the decoder layer's output, a tensor since transformers 5",
    "value_zeroing (last layer)": "as above",
}


@contextlib.contextmanager
def baseline_ids_reach_the_model(inseq_model: Any) -> Iterator[None]:
    """Inseq 0.7.1's layer methods with the baseline token ids reaching the model (a fix of Inseq, undone on exit).

    Inseq's layer methods hand Captum the token ids as the attributed input (``forward_batch_embeds=False``),
    but ``DecoderOnlyInputFormatter.format_forward_args`` (inseq/models/decoder_only.py:185-189) builds the
    model's batch from ``input_ids``, the copy of the *input* ids Inseq passes as an extra forward argument,
    and reads Captum's tensor only as embeddings (``use_embeddings=True``). So when Captum runs the model on
    the baseline ids to get the layer's baseline activation a', the model sees the input ids: a' = a and
    every score (a - a') * ... is 0. Here the ids Captum passes are the ones the model runs on.
    """
    original = inseq_model.forward

    def forward(tensor: Any, input_ids: Any, target_ids: Any, fn: Any, mask: Any = None, embeds: bool = True, *rest):
        return original(tensor, input_ids if embeds else tensor, target_ids, fn, mask, embeds, *rest)

    inseq_model.forward = forward
    try:
        yield
    finally:
        del inseq_model.forward


#: name -> (genattrib method, genattrib params, layer: None = embeddings or a block index)
CAPTUM_CASES: dict[str, tuple[str, dict[str, Any], int | None]] = {
    "layer_integrated_gradients": ("layer_integrated_gradients", {}, None),
    "layer_integrated_gradients, block 1": ("layer_integrated_gradients", {"layer": 1}, 1),
    "layer_deeplift (gradient rule)": ("layer_deeplift", {"nonlinearity": "gradient"}, None),
    "layer_deeplift (gradient rule), block 1": ("layer_deeplift", {"nonlinearity": "gradient", "layer": 1}, 1),
    "layer_gradient_x_activation, block 1": ("layer_gradient_x_activation", {"layer": 1}, 1),
}


class _TokenProbability(torch.nn.Module):
    """Captum's forward: the probability of ``token`` after the ids (one value per row)."""

    def __init__(self, hf: torch.nn.Module, token: int) -> None:
        super().__init__()
        self.hf, self.token = hf, token

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        logits = self.hf(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, -1].float()
        return logits.softmax(-1)[:, self.token]


def _captum_row(
    hf: Any, layer: torch.nn.Module, ids: torch.Tensor, base: torch.Tensor, token: int, label: str, n_steps: int
):
    from captum.attr import LayerDeepLift, LayerGradientXActivation, LayerIntegratedGradients

    forward = _TokenProbability(hf, token)
    if label.startswith("layer_integrated_gradients"):
        method = LayerIntegratedGradients(forward, layer)
        kwargs = {"baselines": base, "n_steps": n_steps, "method": "gausslegendre", "internal_batch_size": n_steps}
    elif label.startswith("layer_deeplift"):
        method, kwargs = LayerDeepLift(forward, layer), {"baselines": base}
    else:
        method, kwargs = LayerGradientXActivation(forward, layer), {}
    return method.attribute(ids, **kwargs).sum(-1)[0].float()


def captum_rows(model: Any, continuation: str, n_steps: int) -> list[str]:
    """Captum 0.9's layer methods called directly (token-id baselines, the layer's output), one row per case:
    the probability of each forced token, per generated token; returns the rows that disagree."""
    from genattrib.methods.layer_forward import resolve_layer

    hf, tok, failed = model.model, model.tokenizer, []
    baseline = next(i for i in (tok.unk_token_id, tok.pad_token_id, tok.eos_token_id) if i is not None)
    print(f"genattrib vs Captum 0.9 directly (baseline id {baseline}, n_steps {n_steps}, Gauss-Legendre)")
    print(f"{'method':40} {'max|Δ|/scale':>13} {'min cosine':>11}  verdict")
    for label, (name, params, index) in CAPTUM_CASES.items():
        if name == "layer_integrated_gradients":
            params = {**params, "n_steps": n_steps}
        ours = model.attribute(PROMPT, target=continuation, method=name, attributed_fn=ATTRIBUTED_FN, **params)
        seq = ours.sequences[0]
        layer = resolve_layer(hf, index).module
        ids_all = seq.input_ids.view(1, -1)
        worst, cosine = 0.0, 1.0
        for row in range(seq.scores.shape[0]):
            end = seq.prompt_length + seq.step_start + row
            ids = ids_all[:, :end]
            special = torch.tensor([[i in tok.all_special_ids for i in ids[0].tolist()]])
            base = torch.where(special, ids, torch.full_like(ids, baseline))
            theirs = _captum_row(hf, layer, ids, base, int(ids_all[0, end]), label, n_steps)
            w, c = _compare(seq.scores[row : row + 1, :end].float(), theirs.view(1, -1))
            worst, cosine = max(worst, w), min(cosine, c)
        ok = worst <= 1e-4 or cosine >= 0.9999
        if not ok:
            failed.append(f"{label} (Captum)")
        print(f"{label:40} {worst:13.2e} {cosine:11.8f}  {'ok' if ok else 'DIFFERENT'}", flush=True)
    return failed


def inseq_bug_check(model: Any, continuation: str) -> None:
    """Prints whether Inseq's own ``layer_integrated_gradients`` (without the fix) still returns all zeros."""
    import inseq

    inseq_model = inseq.load_model(model.model, "layer_integrated_gradients", tokenizer=copy.deepcopy(model.tokenizer))
    out = inseq_model.attribute(
        PROMPT, generated_texts=PROMPT + continuation, attributed_fn=ATTRIBUTED_FN, show_progress=False, n_steps=2
    )
    zero = not bool(_inseq_matrix(out, "sum").nan_to_num(0).abs().max() > 0)
    state = "all zero: the baseline ids never reach the model" if zero else "non-zero: Inseq no longer has the bug"
    print(f"Inseq 0.7.1's layer_integrated_gradients as shipped: {state}; rows below run it with the fix")


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
    parser.add_argument("--only", choices=("inseq", "captum"), default=None, help="one of the two comparisons")
    args = parser.parse_args()
    torch.manual_seed(0)
    import inseq

    model = _load(args.tiny)
    continuation = FAST_CONTINUATION if args.fast else CONTINUATION
    n_steps = args.n_steps or (8 if args.fast else 50)
    failed, skipped = [], []
    if args.only != "inseq":  # first: Inseq's value_zeroing leaves its hooks on the model when it fails
        failed += captum_rows(model, continuation, n_steps)
    cases = {} if args.only == "captum" else CASES
    if cases:
        print("\ngenattrib vs Inseq 0.7.1")
        inseq_bug_check(model, continuation)
        print(f"{'method':34} {'max|Δ|/scale':>13} {'min cosine':>11}  verdict")
    for label, (ours_name, ours_params, theirs_name, theirs_params, reduction) in cases.items():
        params, theirs_params = dict(ours_params), dict(theirs_params)
        if label in INSEQ_FAILS and any(f.startswith(label.split(" ")[0]) for f in skipped):
            print(f"{label:34} {'-':>13} {'-':>11}  skipped: Inseq failed on this method above", flush=True)
            continue
        if ours_name == "layer_integrated_gradients":
            params["n_steps"] = n_steps
            theirs_params.update(n_steps=n_steps, internal_batch_size=n_steps)
        ours = model.attribute(
            PROMPT, target=continuation, method=ours_name, attributed_fn=ATTRIBUTED_FN, **params
        ).sequences[0]
        inseq_model = inseq.load_model(model.model, theirs_name, tokenizer=copy.deepcopy(model.tokenizer))
        hf = model.model
        previous = getattr(hf.config, "_attn_implementation", "sdpa")
        try:
            with baseline_ids_reach_the_model(inseq_model):
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
        verdict = "ok" if ok else ("intended: " + INTENDED[label] if label in INTENDED else "DIFFERENT")
        if not ok and label not in INTENDED:
            failed.append(label)
        print(f"{label:34} {worst:13.2e} {cosine:11.8f}  {verdict}", flush=True)
    if failed:
        print("disagreements: " + ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
