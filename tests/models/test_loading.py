"""Loading: local folders, loaded objects, device maps, dtypes; the wrapped objects stay as given."""

from __future__ import annotations

import pytest
import torch
from tiny import make_model

import genattrib


@pytest.fixture(scope="module")
def saved_folder(tmp_path_factory, tiny_tokenizer):
    folder = tmp_path_factory.mktemp("tiny-llama")
    make_model("llama", tiny_tokenizer).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


def test_load_local_folder(saved_folder):
    model = genattrib.load_model(str(saved_folder), method="input_x_gradient")
    assert model.method == "input_x_gradient" and model.name == str(saved_folder)
    out = model.attribute("The capital of France is", max_new_tokens=2)
    assert out.provenance.model_name == str(saved_folder) and out.provenance.method == "input_x_gradient"


def test_load_with_dtype_and_device_map(saved_folder):
    model = genattrib.load_model(saved_folder, dtype="bfloat16", device_map="cpu")
    assert model.dtype == torch.bfloat16
    out = model.attribute("The capital of France is", max_new_tokens=2, method="integrated_gradients", n_steps=4)
    assert out.sequences[0].scores.dtype == torch.float32
    assert out.provenance.device_map is not None and out.provenance.dtype == "bfloat16"


def test_device_mapped_model_is_never_moved(saved_folder, monkeypatch):
    model = genattrib.load_model(saved_folder, device_map="cpu")
    calls = []
    monkeypatch.setattr(type(model.model), "to", lambda self, *a, **k: calls.append(a) or self)
    model.attribute("The capital of France is", max_new_tokens=2)
    assert calls == []


def test_loaded_objects_are_wrapped_unchanged(tiny_tokenizer):
    hf = make_model("gpt2", tiny_tokenizer)
    model = genattrib.load_model((hf, tiny_tokenizer))
    assert model.model is hf and model.tokenizer is tiny_tokenizer
    also = genattrib.load_model(hf, tokenizer=tiny_tokenizer, method="occlusion")
    assert also.model is hf and also.method == "occlusion"


@pytest.mark.default_model
def test_load_gguf_file():
    from genattrib.models.loading.default_model import gguf_location

    folder, name = gguf_location()
    model = genattrib.load_model(folder / name)
    out = model.attribute("The capital of France is", max_new_tokens=2)
    assert out.sequences[0].generated_text.startswith(" Paris")


@pytest.mark.default_model
def test_default_model_cache_is_reused(tmp_path, monkeypatch):
    from genattrib.models.loading import default_model

    first = default_model.default_model_folder()
    assert (first / "model.safetensors").is_file()
    assert default_model.default_model_folder() == first


def _seq2seq(kind: str, tokenizer):
    """A tiny random T5 or BART (encoder-decoder) built from its config."""
    from transformers import BartConfig, BartForConditionalGeneration, T5Config, T5ForConditionalGeneration

    ids = dict(pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    if kind == "t5":
        config = T5Config(
            vocab_size=len(tokenizer), d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2,
            decoder_start_token_id=tokenizer.pad_token_id, **ids,
        )  # fmt: skip
        return T5ForConditionalGeneration(config).eval()
    config = BartConfig(
        vocab_size=len(tokenizer), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64,
        bos_token_id=tokenizer.bos_token_id, decoder_start_token_id=tokenizer.eos_token_id, **ids,
    )  # fmt: skip
    return BartForConditionalGeneration(config).eval()


@pytest.mark.parametrize("kind", ["t5", "bart"])
def test_encoder_decoder_models_load_as_seq2seq_lms(kind, tiny_tokenizer, tmp_path, monkeypatch):
    """T5 and BART once failed deep inside attribution (an AttributeError on ``.transformer``, a
    ``decoder_input_ids`` error), and a BART folder loaded silently as its bare decoder with new
    random embeddings. Both ways in now give the seq2seq LM itself (tests/encoder_decoder/ attributes
    them), and a folder never goes through AutoModelForCausalLM."""
    from transformers import AutoModelForCausalLM

    model = _seq2seq(kind, tiny_tokenizer)
    assert genattrib.load_model((model, tiny_tokenizer)).model is model
    model.save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)

    def never(*args, **kwargs):
        raise AssertionError("a seq2seq folder must not load as a causal LM")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", never)
    loaded = genattrib.load_model(tmp_path).model
    assert type(loaded) is type(model)
    for (name, a), (_, b) in zip(sorted(model.state_dict().items()), sorted(loaded.state_dict().items())):
        assert torch.equal(a, b), name
