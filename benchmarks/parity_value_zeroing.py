"""Parity of ``value_zeroing`` with Inseq 0.7.1 on the same model object (``nox -s parity``, and under
transformers 4.x ``nox -s parity-legacy``).

Inseq 0.7.1's value zeroing raises on Llama-style models on both transformers 4.57 and 5: its block
hook adds a tuple to the decoder layer's output, a tensor there. The rows run it with that one hook
fixed (:func:`tensor_block_outputs`; the last line names the blocks that needed it).

Compared on genattrib's default model (SmolLM2-135M) and on tiny T5 and Marian models built from
configs: the same continuation, Inseq's default settings (cosine distance, threshold 1e-5, every
head zeroed, each query's scores normalised to sum to 1; on an encoder-decoder model the source
through the cross-attention and the target prefix through the decoder's self-attention, each side
normalised by itself). Inseq returns one score per layer (position × step × layer); genattrib
averages its ``layers=`` (default: all), so the rows are: the mean over all layers, and single
layers (``layers=[l]`` against Inseq's layer ``l``). One line per row: the largest |Δ| relative to
each row's largest |score| and the smallest per-row cosine; exit 1 on a disagreement beyond
max|Δ| ≤ 1e-4 × scale or cosine ≥ 0.9999, except the rows in ``INTENDED`` (printed with the reason,
docs/migrating-from-inseq.md). ``--fast``: a short continuation, three layers, T5 only (CI).

    python benchmarks/parity_value_zeroing.py [--fast] [--families t5 marian] [--tiny]
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
from inseq_runner import tensor_block_outputs  # noqa: E402
from parity_core import row_agreement  # noqa: E402

PROMPT = "The capital of France is"
CONTINUATION = " Paris. It is known for the Eiffel Tower and its museums."
FAST_CONTINUATION = " Paris. It is known"
SOURCE, TARGET = "The capital of France is", "Paris is the capital"

#: rows that differ on purpose, with the reason (docs/migrating-from-inseq.md)
INTENDED = {
    "euclidean": "Inseq 0.7.1's 'euclidean' is 1 - torch.cdist(clean, zeroed), the pairwise distance matrix of all "
    "positions subtracted from 1 (not a per-position distance, and it cannot fill its score tensor); genattrib "
    "scores ||h_i - h~_i|| per query, then normalises as for cosine",
    "marian": "Inseq 0.7.1 multiplies Marian's decoder embeddings by embed_scale and transformers (4.57 and 5) "
    "scales decoder inputs_embeds again, so Inseq runs another function than the model (as in "
    "parity_encoder_decoder.py); in this tiny model the source side is below the 1e-5 threshold in both",
}


def inseq_scores(
    hf: Any, tokenizer: Any, source: str, generated: str, seen: list[str], **kwargs: Any
) -> tuple[Any, Any]:
    """Inseq's value zeroing as (step, position, layer) tensors: (source side or None, target side);
    ``seen``: see :func:`tensor_block_outputs`."""
    import inseq

    inseq_model = inseq.load_model(hf, "value_zeroing", tokenizer=copy.deepcopy(tokenizer))
    with tensor_block_outputs(seen):
        out = inseq_model.attribute(source, generated_texts=generated, show_progress=False, **kwargs)
    seq = out.sequence_attributions[0]
    side = [seq.source_attributions, seq.target_attributions]
    return tuple(None if s is None else s.float().transpose(0, 1) for s in side)


def align(ours: torch.Tensor, theirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The common (step, position) block of the two matrices (Inseq pads positions after a step's query)."""
    steps, width = min(ours.shape[0], theirs.shape[0]), min(ours.shape[1], theirs.shape[1])
    return ours[:steps, :width].float(), theirs[:steps, :width].float()


class Report:
    def __init__(self) -> None:
        self.failed: list[str] = []
        self.fixed: list[str] = []  # block classes that needed tensor_block_outputs

    def row(self, name: str, ours: torch.Tensor, theirs: torch.Tensor, intended: str | None = None) -> None:
        rel, cos, ok = row_agreement(*align(ours, theirs))
        verdict = "ok" if ok else f"intended: {intended}" if intended else "DIFFERENT"
        print(f"{name:44} {rel:13.2e} {cos:11.6f}  {verdict}", flush=True)
        if not ok and not intended:
            self.failed.append(name)

    def note(self, name: str, text: str) -> None:
        print(f"{name:44} {'-':>13} {'-':>11}  {text}", flush=True)


def decoder_only(model: Any, continuation: str, fast: bool, report: Report) -> None:
    """The default (mean of all layers), single layers (``fast``: first, middle, last), and the euclidean
    metric, on a decoder-only model."""
    hf, name = model.model, type(model.model).__name__
    _, theirs = inseq_scores(hf, model.tokenizer, PROMPT, PROMPT + continuation, report.fixed)
    count = theirs.shape[-1]

    def ours(**params: Any) -> torch.Tensor:
        out = model.attribute(PROMPT, target=continuation, method="value_zeroing", **params)
        return out.sequences[0].scores.float()

    report.row(f"{name}: mean of {count} layers", ours(), theirs.nanmean(-1))
    for layer in sorted({0, count // 2, count - 1}) if fast else range(count):
        report.row(f"{name}: layer {layer}", ours(layers=[layer]), theirs[..., layer])
    try:
        _, euclid = inseq_scores(
            hf, model.tokenizer, PROMPT, PROMPT + continuation, report.fixed, similarity_metric="euclidean"
        )
    except Exception as error:  # noqa: BLE001 - Inseq's own failure is the row's result
        report.note(f"{name}: euclidean", f"intended: Inseq raises {type(error).__name__}; {INTENDED['euclidean']}")
        return
    report.row(f"{name}: euclidean", ours(similarity_metric="euclidean"), euclid.nanmean(-1), INTENDED["euclidean"])


def encoder_decoder(kind: str, report: Report) -> None:
    """Source (cross-attention) and target-prefix (self-attention) sides of a tiny encoder-decoder model."""
    from tiny_seq2seq import make_seq2seq_model, make_seq2seq_tokenizer

    import genattrib

    tok = make_seq2seq_tokenizer()
    hf = make_seq2seq_model(kind, tok)
    ours_model = genattrib.load_model((hf, tok))
    source, target = inseq_scores(
        hf, tok, SOURCE, TARGET, report.fixed, attribute_target=True, output_encoder_self_scores=False
    )  # the encoder's own scores are not offered by genattrib (docs/migrating-from-inseq.md)
    for layers, label in ((None, "mean of layers"), ([-1], "last layer")):
        seq = ours_model.attribute(
            SOURCE, TARGET, method="value_zeroing", attribute_prefix=True, layers=layers
        ).sequences[0]
        pick = (lambda t: t.nanmean(-1)) if layers is None else (lambda t: t[..., -1])
        report.row(f"{kind}: source, {label}", seq.source_scores, pick(source), INTENDED.get(kind))
        report.row(f"{kind}: target prefix, {label}", seq.target_scores, pick(target), INTENDED.get(kind))


def load_decoder_only(tiny: bool) -> Any:
    import genattrib

    if not tiny:
        return genattrib.load_model()
    from tiny import make_model, make_tokenizer

    tok = make_tokenizer()
    return genattrib.load_model((make_model("llama", tok), tok))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="a short continuation, 3 layers, T5 only (CI)")
    parser.add_argument("--families", nargs="*", default=None, help="t5, marian (default: both; --fast: t5)")
    parser.add_argument("--tiny", action="store_true", help="a tiny random Llama instead of the default model")
    args = parser.parse_args()
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    torch.manual_seed(0)
    import transformers

    report = Report()
    print(f"genattrib vs Inseq 0.7.1 value_zeroing (transformers {transformers.__version__})")
    print(f"{'row':44} {'max|Δ|/scale':>13} {'min cosine':>11}  verdict")
    model = load_decoder_only(args.tiny)
    decoder_only(model, FAST_CONTINUATION if args.fast else CONTINUATION, args.fast, report)
    for kind in args.families if args.families is not None else ["t5"] if args.fast else ["t5", "marian"]:
        encoder_decoder(kind, report)
    if report.fixed:
        print(f"Inseq ran with its block hook fixed for the tensor output of {', '.join(report.fixed)}")
    if report.failed:
        print("DISAGREEMENTS: " + ", ".join(report.failed))
        return 1
    print("parity_value_zeroing: every compared row agrees")
    return 0


if __name__ == "__main__":
    sys.exit(main())
