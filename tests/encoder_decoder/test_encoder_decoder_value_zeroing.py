"""value_zeroing on encoder-decoder models against an unbatched loop that zeroes one value vector in
one decoder block at a time by hand (a source token's in the cross-attention, a target token's in the
self-attention) on the model run from token ids, as tests/methods/test_value_zeroing.py does for
decoder-only models."""

from __future__ import annotations

import pytest
import torch
from tiny_seq2seq import make_seq2seq_model

import genattrib

pytestmark = pytest.mark.numeric

SOURCE, TARGET = "The capital of France is", "Paris is"


@pytest.fixture(scope="module")
def models(tok):
    return {kind: make_seq2seq_model(kind, tok) for kind in ("t5", "bart", "marian")}


def _attention(block, cross: bool):
    """A decoder block's cross- or self-attention module (T5's sublayers, BART's/Marian's attributes)."""
    if hasattr(block, "layer"):  # T5
        return block.layer[1].EncDecAttention if cross else block.layer[0].SelfAttention
    return block.encoder_attn if cross else block.self_attn


def _state(hf, src, dec, block: int, j: int | None, cross: bool):
    """Decoder block ``block``'s output (the decoder's last hidden states for its last block) with the
    value vector at ``j`` (source position or target position) zeroed in that block's attention."""
    blocks = hf.get_decoder().block if hasattr(hf.get_decoder(), "block") else hf.get_decoder().layers
    attn = _attention(blocks[block], cross)
    projection = attn.v if hasattr(attn, "v") else attn.v_proj
    kept = {}

    def zero(_m, _a, out):
        if j is None:
            return out
        out = out.clone()
        out[:, j] = 0
        return out

    handles = [
        projection.register_forward_hook(zero),
        blocks[block].register_forward_hook(
            lambda _m, _a, o: kept.__setitem__("h", o[0] if isinstance(o, tuple) else o)
        ),
    ]
    try:
        with torch.no_grad():
            out = hf(input_ids=torch.tensor([src]), decoder_input_ids=torch.tensor([dec]), output_hidden_states=True)
    finally:
        for h in handles:
            h.remove()
    return out.decoder_hidden_states[-1][0] if block == len(blocks) - 1 else kept["h"][0]


def _normalised(d: torch.Tensor, threshold: float) -> torch.Tensor:
    d = torch.where(d < threshold, torch.zeros_like(d), d)
    return d / (d.sum() if d.sum() > 0 else 1)


def _by_hand(hf, tok, layers: list[int], threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per target step: (the source's scores, the target prefix's), each side normalised, layers averaged."""
    src, dec = tok(SOURCE)["input_ids"], [hf.config.decoder_start_token_id, *tok(text_target=TARGET)["input_ids"]]
    sources, prefixes = [], []
    cos = lambda a, b: 1 - torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1)  # noqa: E731
    for i in range(len(dec) - 1):  # decoder query i predicts dec[i + 1]
        per_layer_src, per_layer_tgt = [], []
        for block in layers:
            clean = _state(hf, src, dec, block, None, False)[i]
            d_src = torch.stack([cos(clean, _state(hf, src, dec, block, j, True)[i]) for j in range(len(src))])
            d_tgt = torch.stack([cos(clean, _state(hf, src, dec, block, j, False)[i]) for j in range(i + 1)])
            per_layer_src.append(_normalised(d_src.float(), threshold))
            per_layer_tgt.append(_normalised(d_tgt.float(), threshold))
        sources.append(torch.stack(per_layer_src).mean(0))
        prefixes.append(torch.nn.functional.pad(torch.stack(per_layer_tgt).mean(0), (0, len(dec) - 1 - i)))
    return torch.stack(sources), torch.stack(prefixes)


@pytest.mark.parametrize(
    ("kind", "layers", "threshold"),
    [("t5", None, 1e-5), ("t5", [-1], 1e-5), ("bart", [0], 0.0), ("marian", None, 0.0)],  # tiny BART/Marian's
)  # distances are below the default threshold 1e-5 (small random weights): 0 tests the positions instead
def test_batched_equals_one_value_vector_at_a_time(kind, layers, threshold, models, tok):
    hf = models[kind]
    model = genattrib.load_model((hf, tok))
    kwargs = dict(method="value_zeroing", layers=layers, threshold=threshold, attribute_special_tokens=True)
    seq = model.attribute(SOURCE, TARGET, attribute_prefix=True, **kwargs).sequences[0]
    count = hf.config.num_decoder_layers if kind == "t5" else hf.config.decoder_layers
    chosen = list(range(count)) if layers is None else [v % count for v in layers]
    want_src, want_tgt = _by_hand(hf, tok, chosen, threshold)
    assert torch.isnan(seq.target_scores[0, 1:]).all()  # the first step's prefix is the start token alone
    got_tgt = seq.target_scores.nan_to_num(0.0)
    # 1 - cos of nearly equal states cancels: float32 noise of states run in other batch shapes is ~1e-3
    # of a small distance; a wrong position, side or layer is ~1e-1
    for got, want in ((seq.source_scores, want_src), (got_tgt, want_tgt)):
        assert float(want.abs().sum()) > 0
        assert float((got - want).abs().max()) <= 2e-3 * float(want.abs().max()), (got, want)
    assert torch.allclose(seq.source_scores.sum(-1), torch.ones(seq.num_steps), atol=1e-5)  # each side sums to 1
    source_only = model.attribute(SOURCE, TARGET, **kwargs).sequences[0]  # the prefix held fixed: NaN there
    assert torch.isnan(source_only.target_scores).all()
    assert torch.equal(source_only.source_scores, seq.source_scores)


def test_layers_index_the_decoder_blocks(models, tok):
    model = genattrib.load_model((models["t5"], tok))
    with pytest.raises(genattrib.InvalidArgumentError) as info:
        model.attribute(SOURCE, TARGET, method="value_zeroing", layers=[2])
    assert info.value.argument == "layers" and "2 blocks" in str(info.value)
