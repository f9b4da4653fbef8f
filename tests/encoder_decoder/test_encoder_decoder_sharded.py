"""An encoder-decoder model dispatched by accelerate (``device_map=``) gives the scores and the
generated tokens of the same model on one device.

A tiny T5 is saved and reloaded with an explicit map that puts one block of each stack in CPU RAM
and the other on disk (``offload_folder``), the shared token embedding (the encoder's, the
decoder's and the tied LM head) on disk too, so those weights sit on ``meta`` and accelerate's hooks
load them for each forward: each side's embedding, the encoder run and the decoder run all go
through the hooks.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from tiny_seq2seq import make_seq2seq_model, make_seq2seq_tokenizer
from tolerance import TINY_MODEL, assert_same_sequence

import genattrib
from genattrib.engine.seq2seq_forward import EncoderDecoderForward

pytestmark = pytest.mark.numeric  # floats through other shapes: nox -s tests-portable re-runs them

SOURCE = "The capital of France is"
TARGET = "Paris is"
T5_MAP = {
    "shared": "disk",
    "encoder.embed_tokens": "disk",
    "encoder.block.0": "cpu",
    "encoder.block.1": "disk",
    "encoder.final_layer_norm": "cpu",
    "encoder.dropout": "cpu",
    "decoder.embed_tokens": "disk",
    "decoder.block.0": "disk",
    "decoder.block.1": "cpu",
    "decoder.final_layer_norm": "disk",
    "decoder.dropout": "cpu",
    "lm_head": "disk",
}


def _folder_digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(unsplit, sharded, their folder), loaded from the same saved weights."""
    tok = make_seq2seq_tokenizer()
    folder = tmp_path_factory.mktemp("sharded-t5")
    make_seq2seq_model("t5", tok).save_pretrained(folder / "model")
    tok.save_pretrained(folder / "model")
    whole = genattrib.load_model(folder / "model")
    sharded = genattrib.load_model(folder / "model", device_map=T5_MAP, offload_folder=folder / "offload")
    return whole, sharded, folder


def test_the_sharded_encoder_decoder_really_is_offloaded(pair):
    _, sharded, _ = pair
    model = sharded.model
    on_meta = {name for name, p in model.named_parameters() if p.is_meta}
    assert on_meta and len(on_meta) < len(list(model.parameters()))  # part on disk, part in RAM
    assert any(name.startswith("encoder.block.1") for name in on_meta)
    assert any(name.startswith("decoder.block.0") for name in on_meta)
    forward = EncoderDecoderForward(model)
    assert forward.input_device == forward.head_device == torch.device("cpu")  # where they compute, not meta
    assert forward.output_scale == EncoderDecoderForward(pair[0].model).output_scale  # T5's head scale found


@pytest.mark.parametrize(
    ("method", "extra", "prefix"),
    [
        ("saliency", {}, None),
        ("integrated_gradients", {"n_steps": 8, "baseline": "zero", "attributed_fn": "probability"}, True),
    ],
)
def test_sharded_scores_match_the_unsplit_model(pair, method, extra, prefix):
    whole, sharded, folder = pair
    files = _folder_digest(folder)
    kwargs = dict(method=method, attribute_prefix=prefix, step_scores=["probability"], **extra)
    split = sharded.attribute(SOURCE, TARGET, **kwargs).sequences[0]
    alone = whole.attribute(SOURCE, TARGET, **kwargs).sequences[0]
    assert split.tokens == alone.tokens and split.source_length == alone.source_length
    assert_same_sequence(split, alone, floor=TINY_MODEL, what="sharded vs whole")
    assert torch.isfinite(split.source_scores[:, : split.source_length - 1]).all()
    assert _folder_digest(folder) == files  # the offloaded weights are read, never written
    assert {name for name, p in sharded.model.named_parameters() if p.is_meta}  # still offloaded


def test_generation_on_the_sharded_encoder_decoder_matches(pair):
    whole, sharded, _ = pair
    kwargs = dict(max_new_tokens=3, method="saliency", step_scores=["probability"])
    split = sharded.attribute(SOURCE, **kwargs).sequences[0]
    alone = whole.attribute(SOURCE, **kwargs).sequences[0]
    assert split.tokens == alone.tokens and split.num_steps == alone.num_steps
    assert_same_sequence(split, alone, floor=TINY_MODEL, what="sharded vs whole")
