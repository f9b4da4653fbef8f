"""What a wrapper learns by probing its model (the KV-cache keyword, the cost model) is kept for
the wrapper's lifetime: a second ``attribute()`` call does not probe again, plans the same way and
gives the same scores, and nothing is written onto the user's model object."""

from __future__ import annotations

import torch

import genattrib
from genattrib.engine import cost_model as cost_model_module
from genattrib.engine import kv_cache


def test_a_second_call_reuses_the_probes_and_scores_the_same(tiny_tokenizer, monkeypatch, tmp_path):
    from tiny import make_model

    monkeypatch.setenv("GENATTRIB_CACHE_DIR", str(tmp_path))  # nothing stored: the first call measures
    probes, timed = [], []
    probe, timed_call = kv_cache._probe, cost_model_module._timed_call
    monkeypatch.setattr(kv_cache, "_probe", lambda f, k: probes.append(k) or probe(f, k))
    monkeypatch.setattr(cost_model_module, "_timed_call", lambda f, n: timed.append(n) or timed_call(f, n))
    hf_model = make_model("llama", tiny_tokenizer)
    before = set(vars(hf_model))
    model = genattrib.load_model((hf_model, tiny_tokenizer))
    first = model.attribute("a b c d e f", " g h", method="occlusion", show_progress=False)
    assert len(probes) == 1 and len(timed) == 2  # the perturbation reused the clean prefix's K/V
    second = model.attribute("a b c d e f", " g h", method="occlusion", show_progress=False)
    assert len(probes) == 1 and len(timed) == 2  # kept by the wrapper: no second probe or measurement
    torch.testing.assert_close(first.sequences[0].scores, second.sequences[0].scores, rtol=0, atol=0, equal_nan=True)
    assert set(vars(hf_model)) == before  # the probes live in the wrapper, not on the user's model

    other = genattrib.load_model((hf_model, tiny_tokenizer))  # another wrapper probes for itself
    other.attribute("a b c d e f", " g h", method="occlusion", show_progress=False)
    assert len(probes) == 2 and len(timed) == 2  # ... and reads the stored measurement
