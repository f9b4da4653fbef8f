"""kl_divergence_of: Inseq's kl_divergence top_k / top_p filters against a by-hand definition, the
unfiltered case is the built-in step function, bad arguments are refused, and it runs as a step score."""

from __future__ import annotations

import pytest
import torch
from tolerance import OPS, assert_close_to_scale

from genattrib.errors import InvalidArgumentError
from genattrib.targets import BUILTIN_TARGETS, TargetContext, kl_divergence_of


def kl_by_hand(p: torch.Tensor, q: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Rank by p + q; keep a token when the mass (softmax of p + q) of the tokens ranked above it is
    < top_p, then the top_k largest kept; renormalise both over the kept tokens; KL(P || P')."""
    out = []
    for a, b in zip(p.double(), q.double()):
        merged = a + b
        mass = merged.softmax(-1)
        keep = torch.tensor([float(mass[merged > merged[v]].sum()) < top_p for v in range(len(merged))])
        if top_k:
            ranked = sorted(torch.nonzero(keep).flatten().tolist(), key=lambda v: -float(merged[v]))
            keep = torch.zeros_like(keep)
            keep[ranked[:top_k]] = True
        lp, lq = a[keep].log_softmax(-1), b[keep].log_softmax(-1)
        out.append(float((lp.exp() * (lp - lq)).sum()))
    return torch.tensor(out)


@pytest.mark.parametrize(("top_k", "top_p"), [(3, 1.0), (0, 0.6), (4, 0.8)])
def test_filters_match_the_definition(top_k, top_p):
    torch.manual_seed(0)
    p, q = torch.randn(5, 40) * 2, torch.randn(5, 40) * 2
    ctx = TargetContext(p, torch.zeros(5, dtype=torch.long), torch.zeros(5, dtype=torch.long), q)
    got = kl_divergence_of(top_k=top_k, top_p=top_p).fn(ctx)
    assert_close_to_scale(got, kl_by_hand(p, q, top_k, top_p).float(), floor=OPS, what="filtered KL")
    unfiltered = BUILTIN_TARGETS["kl_divergence"].fn(ctx)
    assert not torch.allclose(got, unfiltered)
    assert kl_divergence_of() is BUILTIN_TARGETS["kl_divergence"]


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"top_k": -1}, "top_k"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"min_tokens_to_keep": 0}, "min_tokens_to_keep"),
    ],
)
def test_bad_filters_are_refused(kwargs, argument):
    with pytest.raises(InvalidArgumentError) as info:
        kl_divergence_of(**kwargs)
    assert info.value.argument == argument


def test_as_a_step_score_with_a_contrast_prompt(tiny_llama):
    kw = dict(method="occlusion", contrast_prompt="France is")
    plain = tiny_llama.attribute("The capital of France is", " Paris.", step_scores=["kl_divergence"], **kw)
    top = tiny_llama.attribute(
        "The capital of France is", " Paris.", step_scores={"kl_divergence": kl_divergence_of(top_k=5)}, **kw
    )
    a, b = plain.sequences[0].step_scores["kl_divergence"], top.sequences[0].step_scores["kl_divergence"]
    assert torch.isfinite(b).all() and (b >= -1e-6).all() and not torch.allclose(a, b)
