"""value_zeroing against an unbatched loop that zeroes one value vector in one block at a time
by hand (no patching: the blocks before it run clean anyway), on Llama, GPT-2 and Qwen2."""

from __future__ import annotations

import pytest
import torch

from genattrib.engine.forward import eval_mode
from genattrib.errors import InvalidArgumentError

pytestmark = pytest.mark.numeric

PROMPT, TARGET = "The capital of France is", " Paris. The"


def _blocks(hf):
    return hf.model.layers if hasattr(hf, "model") else hf.transformer.h


def _zeroed_state(hf, ids, block: int, j: int | None):
    """Block ``block``'s output (the final normed states for the last block) with ``v_j`` zeroed there."""
    blocks, handles, kept = _blocks(hf), [], {}
    attn = blocks[block].self_attn if hasattr(blocks[block], "self_attn") else blocks[block].attn
    width = hf.config.hidden_size

    def zero(_m, _a, out):
        if j is None:
            return out
        out = out.clone()
        if hasattr(attn, "v_proj"):
            out[:, j] = 0
        else:  # GPT-2's fused q, k, v
            out[:, j, 2 * width :] = 0
        return out

    handles.append((attn.v_proj if hasattr(attn, "v_proj") else attn.c_attn).register_forward_hook(zero))
    keep = lambda _m, _a, o: kept.__setitem__("h", o[0] if isinstance(o, tuple) else o)  # noqa: E731
    handles.append(blocks[block].register_forward_hook(keep))
    try:
        with torch.no_grad(), eval_mode(hf):  # the engine runs the model in eval mode (no dropout)
            out = hf(ids[None], output_hidden_states=True)
    finally:
        for h in handles:
            h.remove()
    return out.hidden_states[-1][0] if block == len(blocks) - 1 else kept["h"][0]


def _by_hand(am, seq, layers, threshold=1e-5):
    hf, ids = am.model, seq.input_ids
    n = len(ids)
    rows = []
    for t in range(seq.prompt_length, n):
        i = t - 1
        per_layer = []
        for block in layers:
            clean = _zeroed_state(hf, ids, block, None)
            d = torch.zeros(n)
            for j in range(i + 1):
                zeroed = _zeroed_state(hf, ids, block, j)
                d[j] = 1 - torch.nn.functional.cosine_similarity(clean[i].double(), zeroed[i].double(), dim=-1)
            d = torch.where(d < threshold, torch.zeros_like(d), d)
            per_layer.append(d / (d.sum() if d.sum() > 0 else 1))
        row = torch.stack(per_layer).mean(0)
        row[t:] = float("nan")
        rows.append(row)
    return torch.stack(rows)


@pytest.mark.parametrize("layers", [None, [-1], [0]])
def test_batched_equals_one_value_vector_at_a_time(tiny_model, layers):
    seq = tiny_model.attribute(PROMPT, target=TARGET, method="value_zeroing", layers=layers).sequences[0]
    count = len(_blocks(tiny_model.model))
    chosen = range(count) if layers is None else [v % count for v in layers]
    expected = _by_hand(tiny_model, seq, list(chosen))
    keep = torch.isfinite(seq.scores) & ~seq.held_fixed.unsqueeze(0)
    assert torch.isfinite(expected[keep]).all() and keep.sum() > 10
    # 1 - cos(h, h~) of nearly equal states cancels: the 1e-7 noise of float32 states run in other
    # batch shapes is up to ~1e-3 of a small distance (tiny GPT-2); a wrong position or layer is ~1e-1
    diff = (seq.scores[keep] - expected[keep]).abs().max()
    assert diff <= 2e-3 * expected[keep].abs().max(), (diff, seq.scores, expected)


def test_euclidean_distances_are_nonnegative_and_normalised(tiny_llama):
    out = tiny_llama.attribute(PROMPT, target=TARGET, method="value_zeroing", similarity_metric="euclidean")
    seq = out.sequences[0]
    finite = seq.scores.nan_to_num(0)
    assert (finite >= 0).all() and (finite.sum(-1) > 0).all()


@pytest.mark.parametrize(
    ("params", "argument"),
    [({"layers": [7]}, "layers"), ({"layers": ["x"]}, "layers"), ({"similarity_metric": "dot"}, "similarity_metric")],
)
def test_bad_parameters_are_refused_by_name(tiny_llama, params, argument):
    with pytest.raises(InvalidArgumentError) as error:
        tiny_llama.attribute(PROMPT, target=TARGET, method="value_zeroing", **params)
    assert error.value.argument == argument
