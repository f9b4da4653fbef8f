"""genattrib vs Inseq 0.7.1 on the same model object: input_x_gradient, integrated_gradients,
occlusion, attention and every step function the two share (``nox -s parity``).

One line per method or step function: the largest |Δ| relative to each row's largest |score| and
the smallest cosine over rows (a method's row: one generated step; a step function's row: its
values at every step). A row agrees when, for every step, max|Δ| ≤ 1e-4 of the row's
largest |score| or the cosine is ≥ 0.9999. Intended differences are printed with their reason
(docs/migrating-from-inseq.md explains them) and do not fail. It also checks the name lists of
tests/helpers/inseq_reference.py against the installed Inseq (the unit tests check genattrib
against those lists). Exit status 1 on any disagreement.

    python benchmarks/parity_core.py            # the default model, 12 forced tokens
    python benchmarks/parity_core.py --fast     # 5 tokens, fewer IG steps (CI)
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from typing import Any

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "helpers"))
from inseq_reference import INSEQ_METHODS, INSEQ_STEP_FUNCTIONS  # noqa: E402
from inseq_runner import inseq_matrix  # noqa: E402

RTOL, MIN_COSINE = 1e-4, 0.9999
PROMPT = "Marie Curie was born in Warsaw. She studied physics in"
CONTEXTLESS = "She studied physics in"  # the prompt without its context sentence
CONTINUATION = " Paris and became the first woman to win a Nobel Prize in physics."
ALTERNATIVE = " Warsaw and became the first woman to win a Nobel Prize in physics."  # one token differs

#: Inseq 0.7.1 raises in these on a decoder-only model (its target ids reach F.cross_entropy squeezed to a
#: scalar: "Expected input batch_size (1) to match target batch_size (0)"): genattrib is compared with
#: Inseq's formula (-ln p, 2 ** -ln p) applied to Inseq's own probability step scores.
INSEQ_RAISES = ("crossentropy", "perplexity")

#: Step functions whose values are not compared, and why (docs/migrating-from-inseq.md).
NOT_COMPARED = {
    "mc_dropout_prob_avg": "stochastic: each library draws its own dropout masks (genattrib's are seeded); "
    "the default model has no active dropout, so both give 0/0",
}


def row_agreement(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float, bool]:
    """(max over rows of max|Δ| / the row's largest |score|, min cosine over rows, whether every row agrees)."""
    a, b = a.double().reshape(a.shape[0], -1), b.double().reshape(b.shape[0], -1)
    finite = ~(a.isnan() | b.isnan())
    a, b = a.where(finite, 0.0), b.where(finite, 0.0)
    scale = torch.maximum(a.abs().amax(-1), b.abs().amax(-1))
    rel = (a - b).abs().amax(-1) / scale.clamp_min(1e-30)
    rel = rel.where(scale > 0, 0.0)
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1).where(scale > 0, torch.ones(()).double())
    ok = bool(((rel <= RTOL) | (cos >= MIN_COSINE)).all())
    return float(rel.max()), float(cos.min()), ok


class Report:
    def __init__(self) -> None:
        self.failed: list[str] = []

    def row(self, name: str, ours: torch.Tensor, theirs: torch.Tensor) -> None:
        if ours.shape != theirs.shape:
            print(f"{name:42s} shapes {tuple(ours.shape)} vs {tuple(theirs.shape)}  FAIL")
            self.failed.append(name)
            return
        rel, cos, ok = row_agreement(ours, theirs)
        print(f"{name:42s} max|Δ|/scale {rel:9.2e}  min cos {cos:.6f}  {'ok' if ok else 'FAIL'}")
        if not ok:
            self.failed.append(name)

    def intended(self, name: str, reason: str) -> None:
        print(f"{name:42s} not compared (intended): {reason}")


def check_names(report: Report) -> None:
    import inseq

    methods, steps = set(inseq.list_feature_attribution_methods()), set(inseq.list_step_functions())
    for what, listed, real in (("methods", INSEQ_METHODS, methods), ("step functions", INSEQ_STEP_FUNCTIONS, steps)):
        same = set(listed) == real
        print(f"{'inseq ' + what + ' list':42s} {'matches tests/helpers/inseq_reference.py' if same else 'DIFFERS'}")
        if not same:
            print(f"    only in Inseq: {sorted(real - set(listed))}; only in the list: {sorted(set(listed) - real)}")
            report.failed.append(what)


def forced(tokenizer: Any, n_tokens: int) -> tuple[str, str]:
    """The first ``n_tokens`` tokens of the continuation and of its alternative, re-tokenising exactly."""
    ids = tokenizer(CONTINUATION, add_special_tokens=False)["input_ids"][:n_tokens]
    alt = tokenizer(ALTERNATIVE, add_special_tokens=False)["input_ids"][:n_tokens]
    return tokenizer.decode(ids), tokenizer.decode(alt)


def compare_methods(model: Any, continuation: str, n_steps: int, report: Report) -> None:
    import inseq

    specs = {  # method: (genattrib kwargs, Inseq kwargs, Inseq raw-score reduction)
        "input_x_gradient": ({}, {}, "sum"),
        "integrated_gradients": ({"n_steps": n_steps}, {"n_steps": n_steps, "internal_batch_size": n_steps}, "sum"),
        "occlusion": ({}, {}, None),
        "attention": ({}, {}, "mean"),
    }
    hf = model.model
    for method, (ours_kw, theirs_kw, reduction) in specs.items():
        ours = model.attribute(PROMPT, continuation, method=method, attributed_fn="probability", **ours_kw)
        inseq_model = inseq.load_model(hf, method, tokenizer=copy.deepcopy(model.tokenizer))
        previous = getattr(hf.config, "_attn_implementation", "sdpa")
        if method == "attention":
            hf.set_attn_implementation("eager")
        try:
            theirs = inseq_model.attribute(
                PROMPT,
                generated_texts=PROMPT + continuation,
                attributed_fn="probability",
                show_progress=False,
                **theirs_kw,
            )
        finally:
            if method == "attention":
                hf.set_attn_implementation(previous)
        mine = ours.sequences[0].scores.float()
        other = inseq_matrix(theirs, reduction or "abs")
        if method == "occlusion":
            mine = mine.abs()  # Inseq's occlusion returns |Δ|
        n_prompt = mine.shape[1] - other.shape[1]
        mine = mine[:, n_prompt:] if n_prompt > 0 else mine  # Inseq drops no position; align on the right
        report.row(method, mine.nan_to_num(0.0), other.nan_to_num(0.0))


def compare_step_functions(model: Any, continuation: str, alternative: str, report: Report) -> None:
    import inseq

    inseq_model = inseq.load_model(model.model, "dummy", tokenizer=copy.deepcopy(model.tokenizer))
    plain = ["logit", "probability", "entropy", "crossentropy", "perplexity"]
    contrastive = [n for n in INSEQ_STEP_FUNCTIONS if n not in plain and n not in NOT_COMPARED and n != "top_p_size"]

    def theirs(names: list[str], **kwargs: Any) -> dict[str, torch.Tensor]:
        asked = [n for n in names if n not in INSEQ_RAISES]
        out = inseq_model.attribute(
            PROMPT, generated_texts=PROMPT + continuation, step_scores=asked, show_progress=False, **kwargs
        )
        scores = {n: out.sequence_attributions[0].step_scores[n].float() for n in asked}
        if "crossentropy" in names:  # Inseq's own formula on its probabilities
            scores["crossentropy"] = -scores["probability"].double().log().float()
        if "perplexity" in names:
            scores["perplexity"] = 2 ** -scores["probability"].double().log().float()
        return scores

    def ours(names: list[str], **kwargs: Any) -> dict[str, torch.Tensor]:
        out = model.attribute(PROMPT, continuation, method="occlusion", step_scores=names, **kwargs)
        return {n: out.sequences[0].step_scores[n].float() for n in names}

    cases = [
        ("", plain, {}, {}),
        ("top_p_size", ["top_p_size"], {}, {"top_p": 0.9}),
        (  # a different input: the prompt without its context, the same continuation
            "contrast_prompt",
            contrastive,
            {"contrast_prompt": CONTEXTLESS},
            {"contrast_targets": CONTEXTLESS + continuation},
        ),
        (  # the same prompt, another continuation
            "contrast_continuation",
            contrastive,
            {"contrast_continuation": alternative},
            {"contrast_targets": PROMPT + alternative},
        ),
    ]
    for label, names, our_kw, their_kw in cases:
        mine, other = ours(names, **our_kw), theirs(names, **their_kw)
        for name in names:
            suffix = f" ({label})" if label and label != name else ""
            report.row(f"step {name}{suffix}", mine[name][None], other[name][None])
    for name, reason in NOT_COMPARED.items():
        report.intended(f"step {name}", reason)


def compare_contrastive_attribution(model: Any, continuation: str, alternative: str, report: Report) -> None:
    """input_x_gradient of contrast_prob_diff against a different input: the contrast token under the real
    input (both libraries' default), and the contrast input's prediction (``contrast_force_inputs=True``)."""
    import inseq

    inseq_model = inseq.load_model(model.model, "input_x_gradient", tokenizer=copy.deepcopy(model.tokenizer))
    cases = [
        ("contrast_continuation", {"contrast_continuation": alternative}, PROMPT + alternative, False),
        ("contrast_prompt, forced", {"contrast_prompt": CONTEXTLESS}, CONTEXTLESS + continuation, True),
    ]
    for label, our_kw, contrast_targets, force in cases:
        ours = model.attribute(
            PROMPT,
            continuation,
            method="input_x_gradient",
            attributed_fn="contrast_prob_diff",
            contrast_force_inputs=force,
            **our_kw,
        )
        theirs = inseq_model.attribute(
            PROMPT,
            generated_texts=PROMPT + continuation,
            attributed_fn="contrast_prob_diff",
            contrast_targets=contrast_targets,
            contrast_force_inputs=force,
            show_progress=False,
        )
        mine, other = ours.sequences[0].scores.float(), inseq_matrix(theirs, "sum")
        report.row(f"input_x_gradient contrast_prob_diff ({label})", mine.nan_to_num(0.0), other.nan_to_num(0.0))


def compare_attribute_context(model: Any, report: Report) -> None:
    """PECoRe on a short retrieved-document prompt: step one's scores, and step two's context scores."""
    import inseq
    from bench_attribute_context import ANSWER, CONTEXT, CURRENT
    from inseq.commands.attribute_context.attribute_context import attribute_context_with_model
    from inseq.commands.attribute_context.attribute_context_args import AttributeContextArgs

    import genattrib

    ours = genattrib.attribute_context(
        model, CURRENT, input_context_text=CONTEXT, output_current_text=ANSWER, method="saliency"
    )
    args = AttributeContextArgs(
        model_name_or_path="default", attribution_method="saliency", input_current_text=CURRENT,
        input_context_text=CONTEXT, output_current_text=ANSWER, attributed_fn="contrast_prob_diff",
        show_viz=False, show_intermediate_outputs=False,
    )  # fmt: skip
    theirs = attribute_context_with_model(
        args, inseq.load_model(model.model, "saliency", tokenizer=copy.deepcopy(model.tokenizer))
    )
    report.row("attribute-context step one (KL)", torch.tensor(ours.sensitivity_scores)[None],
               torch.tensor(theirs.cti_scores)[None])  # fmt: skip
    if ours.selected != [c.cti_idx for c in theirs.cci_scores]:
        print(f"attribute-context selection differs: {ours.selected} vs {[c.cti_idx for c in theirs.cci_scores]}")
        report.failed.append("attribute-context selection")
        return
    for cue, other in zip(ours.cues, theirs.cci_scores):
        mine = torch.tensor(cue.input_context_scores)[None]
        report.row(
            f"attribute-context step two (token {cue.index})", mine, torch.tensor(other.input_context_scores)[None]
        )


def compare_filters_and_alignments(model: Any, continuation: str, report: Report) -> None:
    """kl_divergence's top_k/top_p filters (genattrib: ``kl_divergence_of``) and explicit contrast
    alignments (``contrast_alignments`` / Inseq's ``contrast_targets_alignments``)."""
    import inseq
    from inseq.utils.torch_utils import filter_logits

    from genattrib.targets import TargetContext, kl_divergence_of

    inseq_model = inseq.load_model(model.model, "dummy", tokenizer=copy.deepcopy(model.tokenizer))
    filters = {"top_k": 5, "top_p": 0.9}
    name = "step kl_divergence (top_k=5, top_p=0.9)"
    kl = kl_divergence_of(**filters)
    seq = model.attribute(PROMPT, continuation, method="occlusion", contrast_prompt=CONTEXTLESS,
                          step_scores={"kl_divergence": kl}).sequences[0]  # fmt: skip
    ours = seq.step_scores["kl_divergence"].float()
    out = inseq_model.attribute(
        PROMPT, generated_texts=PROMPT + continuation, step_scores=["kl_divergence"],
        contrast_targets=CONTEXTLESS + continuation, show_progress=False, **filters,
    )  # fmt: skip
    theirs = out.sequence_attributions[0].step_scores["kl_divergence"].float()
    if bool(theirs.isnan().any()):
        why = "Inseq 0.7.1 returns NaN: F.kl_div(log_target=True) multiplies the filtered tokens' 0 probability"
        report.intended(name, f"{why} by -inf - (-inf); compared below with Inseq's filter_logits instead")
        ids, n = seq.input_ids, seq.prompt_length
        contrast = torch.cat([torch.tensor(model.tokenizer(CONTEXTLESS)["input_ids"]), ids[n:]])
        with torch.no_grad():
            p = model.model(ids[None]).logits[0, n - 1 : -1].float()
            q = model.model(contrast[None]).logits[0, -ids[n:].shape[0] - 1 : -1].float()
        fp, fq = filter_logits(p, q, **filters)
        lp, lq = fp.log_softmax(-1), fq.log_softmax(-1)
        theirs = (lp.exp() * (lp - lq)).nan_to_num(0.0).sum(-1)
        report.row(f"{name} vs Inseq's filter_logits", kl.fn(TargetContext(p, ids[n:], ids[n:], q))[None], theirs[None])
    report.row(name, ours[None], theirs[None])
    tok = model.tokenizer
    start, c_start = len(tok(PROMPT)["input_ids"]), len(tok(CONTEXTLESS)["input_ids"])
    pairs = [(start + 1, c_start + 2), (start + 2, c_start + 1)]  # two steps read each other's contrast position
    names = ["contrast_prob", "pcxmi"]
    mine = model.attribute(PROMPT, continuation, method="occlusion", step_scores=names, contrast_prompt=CONTEXTLESS,
                           contrast_alignments=pairs).sequences[0].step_scores  # fmt: skip
    other = inseq_model.attribute(PROMPT, generated_texts=PROMPT + continuation, step_scores=names,
                                  contrast_targets=CONTEXTLESS + continuation, contrast_targets_alignments=pairs,
                                  show_progress=False).sequence_attributions[0].step_scores  # fmt: skip
    for step in names:
        report.row(f"step {step} (contrast_alignments)", mine[step].float()[None], other[step].float()[None])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="5 forced tokens, 8 IG steps (CI)")
    parser.add_argument("--tokens", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    torch.manual_seed(0)
    import genattrib

    n_tokens = args.tokens or (5 if args.fast else 12)
    model = genattrib.load_model()
    continuation, alternative = forced(model.tokenizer, n_tokens)
    report = Report()
    print(f"parity_core: {model.name}, {n_tokens} forced tokens, tolerance max|Δ| ≤ {RTOL} × row scale or cos ≥ "
          f"{MIN_COSINE}")  # fmt: skip
    check_names(report)
    compare_step_functions(model, continuation, alternative, report)
    compare_contrastive_attribution(model, continuation, alternative, report)
    compare_filters_and_alignments(model, continuation, report)
    compare_attribute_context(model, report)
    compare_methods(model, continuation, 8 if args.fast else 32, report)
    if report.failed:
        print("DISAGREEMENTS: " + ", ".join(report.failed))
        return 1
    print("parity_core: every compared row agrees")
    return 0


if __name__ == "__main__":
    sys.exit(main())
