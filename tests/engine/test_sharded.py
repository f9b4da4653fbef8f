"""A model dispatched by accelerate (``device_map=``) gives the scores of the same model on one device.

Tiny models are saved and reloaded with an explicit device map that puts half the decoder layers in
CPU RAM and half on disk (``offload_folder``), the input embedding and the LM head included, so
their weights sit on the ``meta`` device and accelerate's hooks load them for each forward. Every
registered method must then match the unsplit model to 1e-5 (fp32), for token and span targets,
and leave the model, its hooks and its offloaded weights as they were.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from accelerate.hooks import AlignDevicesHook, add_hook_to_module, remove_hook_from_module
from conformance import FAST  # small settings: the point is equality with the unsplit model
from tiny import make_model
from tolerance import DEFAULT_MODEL, TINY_MODEL, assert_same_sequence, tiny_floor

import genattrib
from genattrib.cli import main
from genattrib.devices import execution_device, layer_shares, offloaded_bytes, rows_within_budget
from genattrib.engine import ModelForward
from genattrib.engine.kv_cache import cache_keyword
from genattrib.errors import InvalidArgumentError
from genattrib.methods import method_class

pytestmark = pytest.mark.numeric  # floats through other shapes: nox -s tests-portable re-runs them

PROMPT = "The capital of France is"
TARGET = " Paris. The"
# half the decoder layers in CPU RAM, half on disk; embedding and head on disk too (their weights on
# meta). GPT-2 ties its head to its token embedding, and tied weights must share a place.
MAPS = {
    "llama": {
        "model.embed_tokens": "disk",
        "model.rotary_emb": "cpu",
        "model.layers.0": "cpu",
        "model.layers.1": "disk",
        "model.norm": "cpu",
        "lm_head": "disk",
    },
    "gpt2": {
        "transformer.wte": "cpu",
        "lm_head": "cpu",
        "transformer.wpe": "disk",
        "transformer.drop": "cpu",
        "transformer.h.0": "cpu",
        "transformer.h.1": "disk",
        "transformer.ln_f": "disk",
    },
}


def _close(a, b, floor: float = TINY_MODEL) -> None:
    assert a.tokens == b.tokens
    assert_same_sequence(a, b, floor=floor, what="sharded vs whole")


def _folder_digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def _state(model: torch.nn.Module) -> dict[str, object]:
    """Everything ``attribute`` must leave as it was: hooks (accelerate's and torch's), each module's
    forward, parameter places, values, flags and gradients, the config's attention implementation."""
    modules = {}
    for name, m in model.named_modules():
        modules[name] = (
            id(getattr(m, "_hf_hook", None)),
            m.__dict__.get("forward"),  # accelerate's wrapped forward, when hooked
            tuple(m._forward_hooks.items()),
            tuple(m._forward_pre_hooks.items()),
            tuple(m._backward_hooks.items()),
            m.training,
        )
    params = {
        name: (str(p.device), p.dtype, tuple(p.shape), p.requires_grad, p.grad is None)
        for name, p in model.named_parameters()
    }
    values = {name: p.detach().clone() for name, p in model.named_parameters() if not p.is_meta}
    return {
        "modules": modules,
        "params": params,
        "values": values,
        "attn": model.config._attn_implementation,
        "map": dict(model.hf_device_map),
    }


def _assert_same_state(before: dict[str, object], after: dict[str, object]) -> None:
    assert before["modules"] == after["modules"]
    assert before["params"] == after["params"]
    assert before["attn"] == after["attn"] and before["map"] == after["map"]
    assert before["values"].keys() == after["values"].keys()
    assert all(torch.equal(before["values"][k], after["values"][k]) for k in before["values"])


@pytest.fixture(scope="module", params=sorted(MAPS))
def pair(request, tiny_tokenizer, tmp_path_factory):
    """(unsplit, sharded, their folder) for each architecture, loaded from the same saved weights
    (the folder holds the checkpoint and the offload folder: recent transformers reads offloaded
    safetensors weights from the checkpoint itself, older ones copy them to the offload folder)."""
    kind = request.param
    folder = tmp_path_factory.mktemp(f"sharded-{kind}")
    make_model(kind, tiny_tokenizer).save_pretrained(folder / "model")
    tiny_tokenizer.save_pretrained(folder / "model")
    whole = genattrib.load_model(folder / "model")
    offload = folder / "offload"
    sharded = genattrib.load_model(folder / "model", device_map=MAPS[kind], offload_folder=offload)
    return whole, sharded, folder


def _kind(model: genattrib.AttributionModel) -> str:
    return "llama" if "Llama" in type(model.model).__name__ else "gpt2"


def test_the_sharded_model_really_is_offloaded(pair):
    whole, sharded, _ = pair
    model = sharded.model
    assert model.hf_device_map == MAPS[_kind(sharded)]
    on_meta = {name for name, p in model.named_parameters() if p.is_meta}
    assert on_meta and len(on_meta) < len(list(model.parameters()))  # part on disk, part in RAM
    hooks = [m._hf_hook for m in model.modules() if isinstance(getattr(m, "_hf_hook", None), AlignDevicesHook)]
    assert any(h.offload and h.weights_map is not None for h in hooks)  # weights loaded for each forward
    forward = ModelForward(model)
    assert forward.input_device == forward.head_device == torch.device("cpu")  # where they compute, not meta
    assert forward.layer_shares == {torch.device("cpu"): 1.0}
    meta_bytes = sum(p.numel() * p.element_size() for p in model.parameters() if p.is_meta)
    assert forward.offloaded == {torch.device("cpu"): meta_bytes}  # loaded onto the CPU for each forward
    assert sharded.devices == ["cpu"]
    # the KV cache of a clean prefix is reused through the hooks, as on the unsplit model
    assert cache_keyword(forward) is not None and cache_keyword(forward) == cache_keyword(ModelForward(whole.model))


@pytest.mark.parametrize("method", genattrib.list_methods())
def test_every_method_matches_the_unsplit_model(pair, method):
    whole, sharded, folder = pair
    params = FAST.get(method, {})
    before, files = _state(sharded.model), _folder_digest(folder)
    kwargs = dict(method=method, seed=3, step_scores=["probability"], **params)
    split = sharded.attribute(PROMPT, TARGET, **kwargs)
    _close(split.sequences[0], whole.attribute(PROMPT, TARGET, **kwargs).sequences[0], tiny_floor(method))
    assert torch.isfinite(split.sequences[0].scores[0, :5]).all()
    if method_class(method).traits.supports_units:  # span targets: one row per word of the continuation
        spans = sharded.attribute(PROMPT, TARGET, explain="words", **kwargs)
        assert len(spans.sequences[0].target_spans) >= 2
        again = whole.attribute(PROMPT, TARGET, explain="words", **kwargs).sequences[0]
        _close(spans.sequences[0], again, tiny_floor(method))
    _assert_same_state(before, _state(sharded.model))
    assert _folder_digest(folder) == files  # the offloaded weights are read, never written
    assert split.provenance.device_map == {k: str(v) for k, v in MAPS[_kind(sharded)].items()}


def test_generation_on_the_sharded_model_matches(pair):
    whole, sharded, _ = pair
    split = sharded.attribute(PROMPT, max_new_tokens=4, method="saliency", step_scores=["probability"])
    alone = whole.attribute(PROMPT, max_new_tokens=4, method="saliency", step_scores=["probability"])
    _close(split.sequences[0], alone.sequences[0])
    before = _state(sharded.model)
    sharded.attribute(PROMPT, max_new_tokens=2, step_scores=["probability"])  # the recorder's hook is removed
    _assert_same_state(before, _state(sharded.model))


def test_batched_backward_passes_run_through_offload_hooks(pair, monkeypatch):
    """A row shared by several targets differentiates the model body for all of them in batched
    vector-Jacobian products (``is_grads_batched``): they work through accelerate's hooks, without
    the fallback to one backward pass per target."""
    _, sharded, _ = pair
    done: list[bool] = []
    grad = torch.autograd.grad

    def spy(*args, **kwargs):
        result = grad(*args, **kwargs)
        done.append(bool(kwargs.get("is_grads_batched")))
        return result

    monkeypatch.setattr(torch.autograd, "grad", spy)
    out = sharded.attribute(PROMPT, TARGET, method="saliency")
    assert out.sequences[0].num_steps >= 2 and out.provenance.work["grad_rows"] == 1
    assert True in done


def test_estimate_plans_the_sharded_model_like_the_unsplit_one(pair):
    whole, sharded, _ = pair
    kwargs = dict(method="integrated_gradients", n_steps=4)
    split, alone = sharded.estimate(PROMPT, TARGET, **kwargs), whole.estimate(PROMPT, TARGET, calibrate=False, **kwargs)
    assert (split.rows, split.model_rows, split.grad_rows, split.flops) == (
        alone.rows,
        alone.model_rows,
        alone.grad_rows,
        alone.flops,
    )
    assert split.device == "cpu" and split.predicted_seconds is not None and split.predicted_seconds > 0


# --- the row budget ---------------------------------------------------------------------------
def test_the_most_loaded_device_sets_the_row_budget():
    gib = 1 << 30
    cuda = [torch.device("cuda", i) for i in range(3)]
    free = {cuda[0]: 40 * gib, cuda[1]: 10 * gib, cuda[2]: 80 * gib}
    # 1 GiB rows; cuda:1 holds half of each row in 10 GiB: 20 rows, although cuda:0 alone fits 160
    assert rows_within_budget(gib, {cuda[0]: 0.25, cuda[1]: 0.5, cuda[2]: 0.25}, free.__getitem__) == 20
    # a device holding no layer does not count; one device holding all of them: its free memory alone
    assert rows_within_budget(gib, {cuda[0]: 1.0, cuda[1]: 0.0}, free.__getitem__) == 40
    assert rows_within_budget(64 * gib, {cuda[1]: 1.0}, free.__getitem__) == 1  # at least one row


def test_layer_shares_follow_the_execution_devices_of_a_fake_device_map(tiny_tokenizer):
    """Layers offloaded to RAM that compute on cuda:1 and cuda:2 (accelerate's own hooks, built
    without a GPU: offloaded weights go to meta and nothing runs): the budget reads their devices."""
    model = make_model("llama", tiny_tokenizer)
    layers = list(model.model.layers)
    try:
        for layer, gpu in zip(layers, (1, 2)):
            weights = {k: v.clone() for k, v in layer.state_dict().items()}
            hook = AlignDevicesHook(execution_device=gpu, offload=True, weights_map=weights, place_submodules=True)
            add_hook_to_module(layer, hook)
        assert all(p.is_meta for p in layers[0].parameters())
        assert [execution_device(layer) for layer in layers] == [torch.device("cuda", 1), torch.device("cuda", 2)]
        assert layer_shares(model) == {torch.device("cuda", 1): 0.5, torch.device("cuda", 2): 0.5}
        size = sum(p.numel() * p.element_size() for p in layers[0].parameters())
        assert offloaded_bytes(model) == {torch.device("cuda", 1): size, torch.device("cuda", 2): size}
        assert execution_device(model.get_input_embeddings()) == torch.device("cpu")  # not hooked: its weight
    finally:
        for layer in layers:
            remove_hook_from_module(layer)


def test_rows_per_chunk_budgets_every_device_of_the_model(tiny_llama, monkeypatch):
    """``ModelForward.rows_per_chunk`` asks each device the model's layers run on, not only the first."""
    forward = ModelForward(tiny_llama.model)
    row = forward.row_bytes(32)
    gpus = [torch.device("cuda", 0), torch.device("cuda", 1)]
    free = {gpus[0]: 100 * row, gpus[1]: 10 * row}
    monkeypatch.setattr("genattrib.engine.forward._available_bytes", lambda device, grad=True: free[device])
    forward.layer_shares = {gpus[0]: 0.5, gpus[1]: 0.5}
    assert forward.rows_per_chunk(32) == 16  # cuda:1 limits: 10 rows of bytes, half a row each: 20, to a power of 2
    forward.layer_shares = {gpus[0]: 1.0}
    assert forward.rows_per_chunk(32) == 64  # 100, rounded down to a power of two
    # weights offloaded to RAM and loaded onto cuda:1 stay there until the backward pass
    forward.layer_shares, forward.offloaded = {gpus[0]: 0.5, gpus[1]: 0.5}, {gpus[1]: 5 * row}
    assert forward.rows_per_chunk(32) == 8  # 10 rows
    forward.offloaded = {}
    # forward-only rows hold one layer's working set at a time, on each device in turn: no share
    forward.layer_shares = {gpus[0]: 0.5, gpus[1]: 0.5}
    one = forward.row_bytes(32, grad=False)
    assert forward.rows_per_chunk(32, grad=False) == 1 << (min(256, free[gpus[1]] // one).bit_length() - 1)


# --- loading options --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs,argument",
    [
        ({"device_map": {"lm_head": "disk"}}, "offload_folder"),
        ({"device_map": {"lm_head": "tape"}, "offload_folder": "x"}, "device_map"),
        ({"device_map": "everywhere"}, "device_map"),
        ({"offload_folder": "x"}, "offload_folder"),
        ({"device_map": {"lm_head": 0}, "max_memory": {0: "1GiB"}}, "max_memory"),
        ({"device_map": "auto", "max_memory": {0: "lots"}}, "max_memory"),
        ({"device_map": "auto", "max_memory": {"gpu0": "1GiB"}}, "max_memory"),
        ({"device_map": "auto", "max_memory": {}}, "max_memory"),
    ],
)
def test_bad_dispatch_options_fail_before_loading(kwargs, argument, tmp_path):
    # the path does not exist: a check that let the options through would fail on the path instead
    with pytest.raises(InvalidArgumentError, match=f"Invalid `{argument}`"):
        genattrib.load_model(tmp_path / "no-such-model", **kwargs)


def test_offload_options_need_a_path_not_a_loaded_model(tiny_llama, tmp_path):
    with pytest.raises(InvalidArgumentError, match="offload_folder"):
        genattrib.load_model((tiny_llama.model, tiny_llama.tokenizer), offload_folder=tmp_path)
    (tmp_path / "file").write_text("")
    with pytest.raises(InvalidArgumentError, match="is a file"):
        genattrib.load_model(tmp_path, device_map="auto", offload_folder=tmp_path / "file")


def test_max_memory_reaches_accelerate(tiny_llama, tmp_path):
    """``device_map="auto"`` with a CPU cap smaller than the model offloads the rest to disk."""
    whole = tiny_llama
    folder = tmp_path / "model"
    whole.model.save_pretrained(folder)
    whole.tokenizer.save_pretrained(folder)
    size = sum(p.numel() * p.element_size() for p in whole.model.parameters())
    capped = genattrib.load_model(folder, device_map="auto", max_memory={"cpu": size // 2}, offload_folder=tmp_path)
    assert "disk" in set(capped.model.hf_device_map.values())
    kwargs = dict(method="integrated_gradients", n_steps=4)
    out = capped.attribute(PROMPT, TARGET, **kwargs)
    _close(out.sequences[0], whole.attribute(PROMPT, TARGET, **kwargs).sequences[0])
    # the provenance records the map accelerate chose, not the "auto" that was asked for
    assert out.provenance.device_map == {k: str(v) for k, v in capped.model.hf_device_map.items()}


def test_command_line_dispatches_with_a_json_device_map(pair, tmp_path, capsys):
    whole, sharded, folder = pair
    device_map = json.dumps(MAPS[_kind(sharded)])
    common = ["attribute", PROMPT, "--target", TARGET, "--model", str(folder / "model"), "--device-map", device_map]
    assert (
        main([*common, "--offload-folder", str(tmp_path / "off"), "--save", str(tmp_path / "o.json"), "--no-show"]) == 0
    )
    out = genattrib.FeatureAttributionOutput.load(tmp_path / "o.json")
    assert out.provenance.device_map == MAPS[_kind(sharded)]
    _close(out.sequences[0], whole.attribute(PROMPT, TARGET).sequences[0])
    assert main(common) == 2 and "offload_folder" in capsys.readouterr().err
    assert main([*common, "--max-memory", "0=1GiB", "--offload-folder", str(tmp_path)]) == 2
    assert "max_memory" in capsys.readouterr().err


# --- the default model ------------------------------------------------------------------------
@pytest.mark.default_model
def test_default_model_split_across_cpu_and_disk_matches(default_model, tmp_path):
    from genattrib.models.loading.default_model import default_model_folder

    layers = default_model.model.config.num_hidden_layers
    device_map = {"model.embed_tokens": "cpu", "lm_head": "cpu", "model.rotary_emb": "cpu", "model.norm": "disk"}
    device_map.update({f"model.layers.{i}": "cpu" if i < layers // 2 else "disk" for i in range(layers)})
    sharded = genattrib.load_model(default_model_folder(), device_map=device_map, offload_folder=tmp_path / "off")
    assert any(p.is_meta for p in sharded.model.parameters())
    before = _state(sharded.model)
    for method, params in [
        ("saliency", {}),
        ("integrated_gradients", {"n_steps": 2}),
        ("occlusion", {}),
        ("attention", {}),
    ]:
        split = sharded.attribute(PROMPT, " Paris", method=method, **params)
        whole = default_model.attribute(PROMPT, " Paris", method=method, **params).sequences[0]
        _close(split.sequences[0], whole, floor=DEFAULT_MODEL)
    _assert_same_state(before, _state(sharded.model))


@pytest.mark.parametrize("where", ["split", "all on disk"])
def test_provenance_records_real_placement_never_meta(pair, where, tmp_path):
    """Offloaded weights sit on ``meta``; the provenance records where each module computes
    (``devices``: the execution devices) and where its weights live (``device_map``: cpu, disk,
    GPUs), never ``meta`` (it once recorded the weights' device, ``meta``)."""
    _, sharded, folder = pair
    if where == "all on disk":
        sharded = genattrib.load_model(folder / "model", device_map={"": "disk"}, offload_folder=tmp_path)
    assert any(p.is_meta for p in sharded.model.parameters())
    p = sharded.attribute(PROMPT, TARGET).provenance
    assert sharded.devices == p.devices == ["cpu"]
    assert p.device_map == {k: str(v) for k, v in sharded.model.hf_device_map.items()}
    assert "disk" in p.device_map.values()
    placements = [*p.devices, *p.device_map.values()]
    assert all("meta" not in place for place in placements)
    saved = sharded.attribute(PROMPT, TARGET).save(tmp_path / "r.json")
    assert genattrib.FeatureAttributionOutput.load(saved).provenance.devices == ["cpu"]
