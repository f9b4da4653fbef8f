"""The batched engine equals a naive per-step reference (one forward+backward per token)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from tolerance import OPS, TINY_MODEL, assert_close_to_scale, tiny_floor

pytestmark = pytest.mark.numeric  # floats through other shapes: nox -s tests-portable re-runs them

PROMPT = "The capital of France is"
TARGET = " Paris. The capital of Italy"


def _naive_rows(am, out):
    """(ids, prompt_length, target positions) of the single sequence in ``out``."""
    seq = out.sequences[0]
    return seq.input_ids, seq.prompt_length, seq.target_positions


def _logprob(model, embeds, target_id):
    logits = model(inputs_embeds=embeds.unsqueeze(0)).logits[0, -1]
    return logits.log_softmax(-1)[target_id]


def _grad(model, embeds, target_id):
    leaf = embeds.detach().clone().requires_grad_(True)
    value = _logprob(model, leaf, target_id)
    (g,) = torch.autograd.grad(value, leaf)
    return value.detach(), g


def reference(am, method, ids, positions, **params):
    """Plain loops over target positions, written independently of the engine."""
    model = am.model
    emb_layer = model.get_input_embeddings()
    unk = emb_layer.weight[am.tokenizer.unk_token_id].detach()
    rows = []
    for p in positions:
        embeds = emb_layer(ids[:p]).detach()
        tgt = int(ids[p])
        if method == "saliency":
            _, g = _grad(model, embeds, tgt)
            row = g.norm(dim=-1)
        elif method == "input_x_gradient":
            _, g = _grad(model, embeds, tgt)
            row = (g * embeds).sum(-1)
        elif method == "integrated_gradients":
            nodes, weights = np.polynomial.legendre.leggauss(params["n_steps"])
            total = torch.zeros_like(embeds)
            base = unk.expand_as(embeds)
            for a, w in zip((nodes + 1) / 2, weights / 2):
                _, g = _grad(model, base + float(a) * (embeds - base), tgt)
                total += float(w) * g
            row = ((embeds - base) * total).sum(-1)
        elif method == "occlusion":
            with torch.no_grad():
                full = _logprob(model, embeds, tgt)
                row = torch.stack(
                    [full - _logprob(model, torch.cat([embeds[:i], unk[None], embeds[i + 1 :]]), tgt) for i in range(p)]
                )
        elif method in ("attention", "rollout"):
            eager = copy.deepcopy(model)
            eager.set_attn_implementation("eager")
            with torch.no_grad():
                att = torch.stack(eager(input_ids=ids[:p].unsqueeze(0), output_attentions=True).attentions)[:, 0]
            if method == "attention":
                row = att[:, :, p - 1].mean(1).mean(0)
            else:
                r = torch.eye(p)
                for layer in att.mean(1):
                    m = 0.5 * layer + 0.5 * torch.eye(p)
                    r = (m / m.sum(-1, keepdim=True)) @ r
                row = r[p - 1]
        rows.append(torch.cat([row.float(), torch.full((len(ids) - p,), float("nan"))]))
    return torch.stack(rows)


@pytest.mark.parametrize(
    "method,params",
    [
        ("saliency", {}),
        ("input_x_gradient", {}),
        ("integrated_gradients", {"n_steps": 6}),
        ("occlusion", {}),
        ("attention", {}),
        ("rollout", {}),
    ],
)
def test_engine_equals_naive_reference(tiny_model, method, params):
    out = tiny_model.attribute(PROMPT, target=TARGET, method=method, **params)
    ids, prompt_length, positions = _naive_rows(tiny_model, out)
    expected = reference(tiny_model, method, ids, positions, **params)
    got = out.sequences[0].scores
    assert got.shape == (len(positions), len(ids))
    assert_close_to_scale(got, expected, floor=tiny_floor(method), what=f"{method} vs the naive reference")


def test_nan_pattern_and_shapes(tiny_model):
    out = tiny_model.attribute(
        [PROMPT, "A quick brown fox"], max_new_tokens=5, method="input_x_gradient", step_scores=["probability"]
    )
    for seq in out.sequences:
        n_gen = len(seq.input_ids) - seq.prompt_length
        assert seq.scores.shape == (n_gen, len(seq.input_ids))
        assert seq.granular_scores is not None and seq.granular_scores.shape[:2] == seq.scores.shape
        for j, p in enumerate(seq.target_positions):
            assert not seq.scores[j, :p].isnan().any()
            assert seq.scores[j, p:].isnan().all()
        assert seq.step_scores["probability"].shape == (n_gen,)
        assert seq.tokens[: seq.prompt_length] == seq.prompt_tokens


def test_granular_reduces_to_scores(tiny_llama):
    out = tiny_llama.attribute(PROMPT, target=TARGET, method="saliency")
    seq = out.sequences[0]
    assert_close_to_scale(seq.granular_scores.norm(dim=-1), seq.scores, floor=OPS, what="norm of granular scores")


def test_attr_pos_restricts_steps(tiny_llama):
    full = tiny_llama.attribute(PROMPT, target=TARGET, method="saliency")
    part = tiny_llama.attribute(PROMPT, target=TARGET, method="saliency", attr_pos_start=1, attr_pos_end=3)
    seq, ref = part.sequences[0], full.sequences[0]
    assert seq.num_steps == 2 and seq.step_start == 1
    assert seq.target_positions == ref.target_positions[1:3]
    assert_close_to_scale(seq.scores, ref.scores[1:3], floor=TINY_MODEL)  # other rows run
