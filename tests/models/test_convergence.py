"""Path methods warn once per call when completeness_error is a large share of F(x) - F(x')."""

from __future__ import annotations

import warnings

import torch
from tolerance import OPS, assert_close_to_scale

from genattrib.errors import GenattribWarning
from genattrib.models.results.convergence import COMPLETENESS_TOLERANCE, unconverged_share

PROMPT, TEXT = "The capital of France is", " Paris. It is"


def _warnings(call):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = call()
    return out, [w for w in caught if issubclass(w.category, GenattribWarning)]


def test_a_coarse_path_warns_once_with_the_fix(tiny_llama):
    out, caught = _warnings(
        lambda: tiny_llama.attribute(PROMPT, TEXT, method="integrated_gradients", n_steps=1, quadrature="riemann_left")
    )
    seq = out.sequences[0]
    delta = seq.scores.nan_to_num().sum(-1) - seq.step_scores["completeness_error"]
    share = (seq.step_scores["completeness_error"].abs() / delta.abs()).max()
    assert share > COMPLETENESS_TOLERANCE
    assert_close_to_scale(unconverged_share(out), float(share), floor=OPS, what="unconverged share")
    assert len(caught) == 1 and "n_steps=4" in str(caught[0].message)
    assert "attributed_fn='probability'" in str(caught[0].message)


def test_the_warning_does_not_suggest_the_target_already_used(tiny_llama):
    _, caught = _warnings(
        lambda: tiny_llama.attribute(
            PROMPT,
            TEXT,
            method="integrated_gradients",
            n_steps=1,
            quadrature="riemann_left",
            attributed_fn="probability",
        )
    )
    assert len(caught) == 1 and "n_steps=4" in str(caught[0].message)
    assert "attributed_fn='probability'" not in str(caught[0].message)


def test_a_converged_path_does_not_warn(tiny_llama):
    out, caught = _warnings(lambda: tiny_llama.attribute(PROMPT, TEXT, method="integrated_gradients", n_steps=64))
    assert unconverged_share(out) <= COMPLETENESS_TOLERANCE and not caught


def test_methods_without_the_promise_never_warn(tiny_llama):
    _, caught = _warnings(lambda: tiny_llama.attribute(PROMPT, TEXT, method="saliency"))
    assert not caught
    out, caught = _warnings(
        lambda: tiny_llama.attribute(PROMPT, TEXT, method="sequential_integrated_gradients", n_steps=1)
    )
    assert torch.isfinite(out.sequences[0].step_scores["completeness_error"]).all() and not caught
