"""FeatureAttributionOutput / SequenceAttribution: save/load, slicing, merging, equality."""

from __future__ import annotations

import base64
import copy
import json
import math
import pickle
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save_file

import genattrib
from genattrib import (
    FeatureAttributionOutput,
    InvalidArgumentError,
    Provenance,
    SequenceAttribution,
)

PROMPT = "The capital of France is"
SUFFIXES = [".json", ".safetensors"]
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------------------------
# strategies
# --------------------------------------------------------------------------------------------
ODD_TOKENS = [
    "",
    " ",
    "\n",
    "\r\n",
    "\t",
    '"',
    "'",
    "\"'",
    "\\",
    "<script>",
    "</script>",
    "<b>&amp;</b>",
    "é",
    "日本語",
    "🙂",
    "\u200b",
    "\x00",
    "Ġ",
    "▁",
    '{"a": 1}',
    "NaN",
]
TOKEN = st.one_of(st.sampled_from(ODD_TOKENS), st.text(max_size=6))
STEP_NAMES = st.sampled_from(["probability", "logprob", "entropy", "a.b", "x y", "ü", "step.0"])
SCORE = st.floats(width=32, allow_nan=False)  # infinities included
STEP_VALUE = st.floats(width=32)  # NaN included

JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=10,
)
JSON_DICT = st.dictionaries(st.text(max_size=8), JSON_VALUE, max_size=4)


def _nan_after_target(values: torch.Tensor, prompt_length: int, step_start: int) -> torch.Tensor:
    """scores[j, i] = NaN for i >= prompt_length + step_start + j (any trailing dims)."""
    k, n = values.shape[:2]
    rows = torch.arange(k).unsqueeze(1)
    cols = torch.arange(n).unsqueeze(0)
    masked = cols >= prompt_length + step_start + rows
    while masked.ndim < values.ndim:
        masked = masked.unsqueeze(-1)
    return values.masked_fill(masked, math.nan)


@st.composite
def sequence_specs(draw, min_steps: int = 0) -> dict:
    prompt_length = draw(st.integers(1, 6))
    generated = draw(st.integers(min_steps, 6))
    n = prompt_length + generated
    step_start = draw(st.integers(0, generated - min_steps))
    k = draw(st.integers(min_steps, generated - step_start))
    tokens = draw(st.lists(TOKEN, min_size=n, max_size=n))
    ids = torch.tensor(draw(st.lists(st.integers(0, 2**40), min_size=n, max_size=n)), dtype=torch.long)
    scores = torch.tensor(draw(st.lists(SCORE, min_size=k * n, max_size=k * n)), dtype=torch.float32).reshape(k, n)
    scores = _nan_after_target(scores, prompt_length, step_start)
    granular = None
    if draw(st.booleans()):
        h = draw(st.integers(1, 3))
        dtype = draw(st.sampled_from([torch.float32, torch.float64]))
        values = draw(st.lists(SCORE, min_size=k * n * h, max_size=k * n * h))
        granular = _nan_after_target(torch.tensor(values, dtype=dtype).reshape(k, n, h), prompt_length, step_start)
    names = draw(st.lists(STEP_NAMES, unique=True, max_size=4))
    step_scores = {
        name: torch.tensor(draw(st.lists(STEP_VALUE, min_size=k, max_size=k)), dtype=torch.float32) for name in names
    }
    special = torch.tensor(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=torch.bool)
    # Plain keyword arguments: the objects are built outside the strategy (the run-time type
    # checker samples containers with `random`, which hypothesis forbids inside strategies).
    return dict(
        input_ids=ids,
        tokens=tokens,
        prompt_length=prompt_length,
        scores=scores,
        step_scores=step_scores,
        held_fixed=special,
        granular_scores=granular,
        step_start=step_start,
        generated_text=draw(st.one_of(st.sampled_from(ODD_TOKENS), st.text(max_size=12))),
    )


@st.composite
def provenance_specs(draw) -> dict:
    return dict(
        model_name=draw(st.text(max_size=10)),
        model_revision=draw(st.one_of(st.none(), st.text(max_size=6))),
        model_class=draw(st.text(max_size=6)),
        dtype=draw(st.sampled_from(["float32", "bfloat16", ""])),
        devices=draw(st.lists(st.text(max_size=6), max_size=2)),
        device_map=draw(st.one_of(st.none(), st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=3))),
        method=draw(st.sampled_from(["saliency", "integrated_gradients", "occlusion"])),
        method_params=draw(JSON_DICT),
        attributed_fn=draw(st.sampled_from(["logprob", "probability"])),
        attributed_fn_args=draw(JSON_DICT),
        step_scores=draw(st.lists(st.text(max_size=6), max_size=3)),
        generation_config=draw(JSON_DICT),
        forced_target=draw(st.booleans()),
        seed=draw(st.one_of(st.none(), st.integers(-(2**63), 2**63))),
        versions=draw(st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=3)),
        timings=draw(st.dictionaries(st.text(max_size=6), st.floats(0, 1e6), max_size=4)),
        created_at=draw(st.text(max_size=20)),
    )


@st.composite
def output_specs(draw, min_sequences: int = 0, min_steps: int = 0) -> dict:
    seqs = draw(st.lists(sequence_specs(min_steps=min_steps), min_size=min_sequences, max_size=3))
    return {"sequences": seqs, "provenance": draw(provenance_specs())}


def build_sequence(spec: dict) -> SequenceAttribution:
    return SequenceAttribution(**copy.deepcopy(spec))


def build_output(spec: dict) -> FeatureAttributionOutput:
    return FeatureAttributionOutput(
        [build_sequence(s) for s in spec["sequences"]], Provenance(**copy.deepcopy(spec["provenance"]))
    )


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
_BITS = {
    torch.float32: torch.int32,
    torch.float64: torch.int64,
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
}


def bit_equal(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    """Bit-exact equality (NaN payloads and infinities included)."""
    if a is None or b is None:
        return a is b
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype in _BITS:
        return torch.equal(a.contiguous().view(_BITS[a.dtype]), b.contiguous().view(_BITS[b.dtype]))
    return torch.equal(a, b)


def assert_identical(a: FeatureAttributionOutput, b: FeatureAttributionOutput) -> None:
    assert a.equals(b) and b.equals(a)
    assert a.provenance == b.provenance
    assert len(a) == len(b)
    for x, y in zip(a.sequences, b.sequences):
        assert x.tokens == y.tokens
        assert x.prompt_length == y.prompt_length and x.step_start == y.step_start
        assert x.generated_text == y.generated_text
        assert bit_equal(x.input_ids, y.input_ids)
        assert bit_equal(x.scores, y.scores)
        assert torch.equal(x.scores.isnan(), y.scores.isnan())
        assert bit_equal(x.held_fixed, y.held_fixed)
        assert bit_equal(x.granular_scores, y.granular_scores)
        if x.granular_scores is not None:
            assert torch.equal(x.granular_scores.isnan(), y.granular_scores.isnan())
        assert set(x.step_scores) == set(y.step_scores)
        for name in x.step_scores:
            assert bit_equal(x.step_scores[name], y.step_scores[name])


def roundtrip(out: FeatureAttributionOutput, suffix: str) -> FeatureAttributionOutput:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"result{suffix}"
        written = out.save(path)
        assert Path(written) == path and path.is_file()
        return FeatureAttributionOutput.load(path)


def small_sequence(
    prompt_length: int = 3,
    generated: int = 4,
    step_start: int = 0,
    steps: int | None = None,
    seed: int = 0,
    granular: bool = True,
) -> SequenceAttribution:
    g = torch.Generator().manual_seed(seed)
    n = prompt_length + generated
    k = generated - step_start if steps is None else steps
    scores = _nan_after_target(torch.randn(k, n, generator=g), prompt_length, step_start)
    gran = _nan_after_target(torch.randn(k, n, 2, generator=g), prompt_length, step_start) if granular else None
    return SequenceAttribution(
        input_ids=torch.arange(10, 10 + n),
        tokens=[f"t{i}" for i in range(n)],
        prompt_length=prompt_length,
        scores=scores,
        step_scores={"probability": torch.rand(k, generator=g), "entropy": torch.rand(k, generator=g)},
        granular_scores=gran,
        step_start=step_start,
        generated_text="gen",
    )


def small_output(n_seqs: int = 3, method: str = "saliency", timings: dict | None = None) -> FeatureAttributionOutput:
    prov = Provenance(
        model_name="tiny",
        method=method,
        attributed_fn="logprob",
        method_params={"nested": {"a": [1, 2, {"b": None}]}, "none": None},
        timings=dict(timings or {"generate": 1.0, "attribute": 2.0}),
    )
    return FeatureAttributionOutput([small_sequence(seed=i, generated=4 + i) for i in range(n_seqs)], prov)


# --------------------------------------------------------------------------------------------
# save / load
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", SUFFIXES)
@SETTINGS
@given(spec=output_specs())
def test_roundtrip_is_exact(spec, suffix):
    out = build_output(spec)
    loaded = roundtrip(out, suffix)
    assert_identical(out, loaded)


@pytest.mark.parametrize("suffix", SUFFIXES)
@SETTINGS
@given(spec=provenance_specs())
def test_provenance_roundtrips(spec, suffix):
    prov = Provenance(**spec)
    out = FeatureAttributionOutput([small_sequence()], prov)
    loaded = roundtrip(out, suffix)
    assert loaded.provenance == prov
    assert loaded.provenance.to_dict() == prov.to_dict()


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_nested_provenance_and_none_roundtrip(suffix):
    prov = Provenance(
        model_name="m",
        model_revision=None,
        method="saliency",
        seed=None,
        device_map=None,
        method_params={"a": {"b": {"c": [1, None, "x", {"d": 2.5}]}}, "e": None},
        generation_config={"max_new_tokens": 3, "eos_token_id": [3, 4], "nested": {"k": None}},
    )
    loaded = roundtrip(FeatureAttributionOutput([small_sequence()], prov), suffix)
    assert loaded.provenance.method_params == {"a": {"b": {"c": [1, None, "x", {"d": 2.5}]}}, "e": None}
    assert loaded.provenance.generation_config["nested"] == {"k": None}
    assert loaded.provenance.model_revision is None and loaded.provenance.seed is None
    assert loaded.provenance.device_map is None


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_roundtrip_of_empty_and_zero_step_outputs(suffix):
    empty = FeatureAttributionOutput([], Provenance(method="saliency"))
    assert_identical(empty, roundtrip(empty, suffix))
    no_steps = FeatureAttributionOutput([small_sequence().steps(2, 2)], Provenance(method="saliency"))
    assert no_steps.sequences[0].num_steps == 0
    assert_identical(no_steps, roundtrip(no_steps, suffix))


def test_saved_json_is_plain_json_without_pickle(tmp_path, monkeypatch):
    out = small_output()
    path = out.save(tmp_path / "r.json")
    doc = json.loads(Path(path).read_text(encoding="utf-8"))  # the whole file is valid JSON
    assert set(doc) == {"format", "meta", "tensors"}
    assert doc["format"].startswith("genattrib/")
    assert [s["tokens"] for s in doc["meta"]["sequences"]] == [s.tokens for s in out.sequences]
    tensors = load_safetensors_bytes(base64.b64decode(doc["tensors"]))  # tensors: safetensors bytes
    assert torch.equal(tensors["0.input_ids"], out.sequences[0].input_ids)

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle must never be used to load a result")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(torch.serialization, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    assert_identical(out, FeatureAttributionOutput.load(path))
    st_path = out.save(tmp_path / "r.safetensors")
    assert_identical(out, FeatureAttributionOutput.load(st_path))


def test_saved_safetensors_is_a_safetensors_file(tmp_path):
    out = small_output()
    path = out.save(tmp_path / "r.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        assert meta["format"].startswith("genattrib/")
        assert json.loads(meta["meta"])["provenance"]["method"] == "saliency"
        assert torch.equal(f.get_tensor("1.input_ids"), out.sequences[1].input_ids)


@pytest.mark.parametrize("suffix", SUFFIXES)
@SETTINGS
@given(spec=output_specs(min_sequences=1))
def test_save_does_not_mutate(spec, suffix):
    out = build_output(spec)
    before = copy.deepcopy(out)
    ids_before = [id(s.scores) for s in out.sequences]
    with tempfile.TemporaryDirectory() as folder:
        out.save(Path(folder) / f"r{suffix}")
    assert_identical(out, before)
    assert [id(s.scores) for s in out.sequences] == ids_before


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_save_of_outputs_sharing_tensors(suffix):
    """A sliced view keeps the original's input_ids/held_fixed tensors; merging it with the
    original (or merging a result with itself) must still save and reload exactly."""
    out = small_output(2)
    merged = FeatureAttributionOutput.merge([out, out.steps(1, 3)], stitch=False)  # overlapping: not stitched
    assert_identical(merged, roundtrip(merged, suffix))
    stitched = FeatureAttributionOutput.merge([out.steps(0, 1), out.steps(1, 3)])  # windows: one sequence each
    assert len(stitched) == 2 and stitched.sequences[0].input_ids is out.sequences[0].input_ids
    assert_identical(stitched, roundtrip(stitched, suffix))
    twice = FeatureAttributionOutput.merge([out, out])
    assert_identical(twice, roundtrip(twice, suffix))


def _expect_path_error(call):
    with pytest.raises(InvalidArgumentError) as info:
        call()
    assert info.value.argument == "path"
    assert "`path`" in str(info.value)
    return info.value


@pytest.mark.parametrize("content", ['{"a": 1}', '{"format": "other/1", "meta": {}, "tensors": ""}'])
def test_load_non_genattrib_json_object(tmp_path, content):
    path = tmp_path / "other.json"
    path.write_text(content)
    _expect_path_error(lambda: FeatureAttributionOutput.load(path))


@pytest.mark.parametrize("content", ["[1, 2]", "42", "null", "not json at all", ""])
def test_load_json_that_is_not_an_object_or_not_json(tmp_path, content):
    path = tmp_path / "other.json"
    path.write_text(content)
    _expect_path_error(lambda: FeatureAttributionOutput.load(path))


def test_load_plain_safetensors_file(tmp_path):
    path = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(3)}, str(path))
    _expect_path_error(lambda: FeatureAttributionOutput.load(path))


@pytest.mark.parametrize("content", [b"garbage bytes, not a safetensors file", b"", b"\x01"])
def test_load_garbage_safetensors(tmp_path, content):
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(content)
    _expect_path_error(lambda: FeatureAttributionOutput.load(path))


@pytest.mark.parametrize("name", ["r.pt", "r.pkl", "r", "r.txt"])
def test_wrong_suffix_on_save_and_load(tmp_path, name):
    out = small_output(1)
    error = _expect_path_error(lambda: out.save(tmp_path / name))
    assert ".json" in error.fix and ".safetensors" in error.fix
    assert not (tmp_path / name).exists()
    (tmp_path / name).write_bytes(b"{}")
    _expect_path_error(lambda: FeatureAttributionOutput.load(tmp_path / name))


def test_load_missing_file(tmp_path):
    _expect_path_error(lambda: FeatureAttributionOutput.load(tmp_path / "missing.json"))


# --------------------------------------------------------------------------------------------
# indexing, steps, merge, equality
# --------------------------------------------------------------------------------------------
@SETTINGS
@given(spec=output_specs(min_sequences=1))
def test_indexing(spec):
    out = build_output(spec)
    n = len(out)
    first = out[0]
    assert isinstance(first, FeatureAttributionOutput) and len(first) == 1
    assert first.sequences[0] is out.sequences[0] or first.sequences[0].equals(out.sequences[0])
    assert first.provenance == out.provenance
    last = out[-1]
    assert len(last) == 1 and last.sequences[0].equals(out.sequences[n - 1])
    rest = out[1:]
    assert len(rest) == n - 1
    assert all(a.equals(b) for a, b in zip(rest.sequences, out.sequences[1:]))
    assert rest.provenance == out.provenance
    for bad in (n, -n - 1, n + 5):
        with pytest.raises(IndexError):
            out[bad]


def test_indexing_copies_provenance_and_leaves_original():
    out = small_output(3)
    sub = out[1:]
    sub.provenance.method_params["nested"]["a"].append("changed")
    sub.sequences.append(small_sequence())
    assert out.provenance.method_params["nested"]["a"] == [1, 2, {"b": None}]
    assert len(out) == 3
    assert [s.generated_text for s in out[::2]] == ["gen", "gen"] and len(out[::2]) == 2


def test_steps_keeps_rows_and_shifts_positions():
    seq = small_sequence(prompt_length=3, generated=5, step_start=0)
    out = FeatureAttributionOutput([seq], Provenance(method="saliency"))
    cut = out.steps(1, 3)
    s = cut.sequences[0]
    assert s.num_steps == 2
    assert s.step_start == 1
    assert bit_equal(s.scores, seq.scores[1:3])
    assert bit_equal(s.granular_scores, seq.granular_scores[1:3])
    for name, values in seq.step_scores.items():
        assert bit_equal(s.step_scores[name], values[1:3])
    assert s.target_positions == [4, 5] == seq.target_positions[1:3]
    assert s.target_tokens == ["t4", "t5"] == seq.target_tokens[1:3]
    assert torch.equal(s.target_ids, seq.target_ids[1:3])
    # the NaN pattern still follows the rule for the shifted step_start
    for j, p in enumerate(s.target_positions):
        assert torch.isnan(s.scores[j, p:]).all() and not torch.isnan(s.scores[j, :p]).any()
    assert s.tokens == seq.tokens and torch.equal(s.input_ids, seq.input_ids)
    assert seq.num_steps == 5 and seq.step_start == 0  # original untouched
    # slicing again composes
    again = cut.steps(1, None).sequences[0]
    assert again.step_start == 2 and again.target_positions == [5]
    assert bit_equal(again.scores, seq.scores[2:3])


@SETTINGS
@given(spec=sequence_specs(min_steps=3), start=st.integers(-4, 4), stop=st.one_of(st.none(), st.integers(-4, 6)))
def test_steps_matches_python_slicing(spec, start, stop):
    seq = build_sequence(spec)
    rows = list(range(seq.num_steps))[start:stop]
    cut = seq.steps(start, stop)
    assert cut.num_steps == len(rows)
    if rows:
        assert cut.step_start == seq.step_start + rows[0]
        assert cut.target_positions == [seq.target_positions[r] for r in rows]
        assert cut.target_tokens == [seq.target_tokens[r] for r in rows]
        assert bit_equal(cut.scores, seq.scores[rows[0] : rows[-1] + 1])
        for name, values in seq.step_scores.items():
            assert bit_equal(cut.step_scores[name], values[rows[0] : rows[-1] + 1])


def test_merge_concatenates_and_sums_timings():
    a = small_output(2, timings={"generate": 1.5, "attribute": 2.0})
    b = small_output(1, timings={"generate": 0.5, "total": 4.0})
    merged = FeatureAttributionOutput.merge([a, b])
    assert len(merged) == 3
    assert all(x is y for x, y in zip(merged.sequences, [*a.sequences, *b.sequences], strict=True))
    assert merged.provenance.timings == {"generate": 2.0, "attribute": 2.0, "total": 4.0}
    assert merged.provenance.method == "saliency"
    assert a.provenance.timings == {"generate": 1.5, "attribute": 2.0}  # inputs untouched
    assert len(a) == 2 and len(b) == 1


def test_merge_sums_work_counts_and_keeps_the_largest_chunk():
    a, b = small_output(1), small_output(1)
    a.provenance.work = {"rows": 10, "model_calls": 3, "max_chunk_rows": 8, "oom_retries": 1}
    b.provenance.work = {"rows": 4, "model_calls": 2, "max_chunk_rows": 2, "oom_retries": 0}
    merged = FeatureAttributionOutput.merge([a, b])
    assert merged.provenance.work == {"rows": 14, "model_calls": 5, "max_chunk_rows": 8, "oom_retries": 1}


@pytest.mark.parametrize(
    "field,value", [("method", "occlusion"), ("model_name", "other"), ("attributed_fn", "probability")]
)
def test_merge_refuses_different_results(field, value):
    a = small_output(1)
    b = small_output(1)
    setattr(b.provenance, field, value)
    with pytest.raises(InvalidArgumentError) as info:
        FeatureAttributionOutput.merge([a, b])
    assert info.value.argument == "outputs"
    assert field in str(info.value)


def test_merge_of_nothing():
    with pytest.raises(InvalidArgumentError) as info:
        FeatureAttributionOutput.merge([])
    assert info.value.argument == "outputs"


def test_equals_detects_differences():
    base = small_sequence()
    assert base.equals(copy.deepcopy(base))
    changed = copy.deepcopy(base)
    changed.scores[0, 0] += 1.0
    assert not base.equals(changed)
    changed = copy.deepcopy(base)
    changed.scores[0, 0] = math.nan
    assert not base.equals(changed)
    changed = copy.deepcopy(base)
    changed.tokens[0] = "other"
    assert not base.equals(changed)
    changed = copy.deepcopy(base)
    changed.step_scores["probability"][0] += 1.0
    assert not base.equals(changed)
    changed = copy.deepcopy(base)
    del changed.step_scores["entropy"]
    assert not base.equals(changed)
    changed = copy.deepcopy(base)
    changed.granular_scores = None
    assert not base.equals(changed)


def test_equals_distinguishes_infinity_from_largest_float():
    """``equals`` promises exact equality: +inf is not float32's largest finite value."""
    big = torch.finfo(torch.float32).max
    a = SequenceAttribution(torch.arange(2), ["a", "b"], 1, torch.tensor([[math.inf, math.nan]]))
    b = SequenceAttribution(torch.arange(2), ["a", "b"], 1, torch.tensor([[big, math.nan]]))
    assert not a.equals(b)
    c = SequenceAttribution(torch.arange(2), ["a", "b"], 1, torch.tensor([[-math.inf, math.nan]]))
    d = SequenceAttribution(torch.arange(2), ["a", "b"], 1, torch.tensor([[-big, math.nan]]))
    assert not c.equals(d)


# --------------------------------------------------------------------------------------------
# end to end with a real attribution
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_output(tiny_llama):
    return tiny_llama.attribute(PROMPT, max_new_tokens=3, step_scores=["probability"])


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_real_attribution_roundtrip(real_output, suffix, tmp_path):
    out = real_output
    seq = out.sequences[0]
    assert seq.num_steps == 3 and torch.isnan(seq.scores).any()
    before = copy.deepcopy(out)
    path = out.save(tmp_path / f"paris{suffix}")
    assert_identical(out, before)
    loaded = FeatureAttributionOutput.load(path)
    assert_identical(out, loaded)
    s = loaded.sequences[0]
    assert s.step_scores.keys() == {"probability"}
    assert s.tokens == seq.tokens and s.generated_text == seq.generated_text
    assert loaded.provenance.method == "saliency" and loaded.provenance.versions == out.provenance.versions
    assert loaded.provenance.generation_config == out.provenance.generation_config
    # the loaded result is usable: slicing and indexing behave like the original
    assert loaded.steps(1, 3).sequences[0].target_positions == seq.target_positions[1:3]
    assert loaded[0].equals(out[0])


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_real_attribution_with_tuple_generation_setting_roundtrips(tiny_llama, suffix, tmp_path):
    """Generation settings given as tuples (``suppress_tokens=(5, 6)``) end up in the provenance;
    the saved result must still reload equal to the original."""
    out = tiny_llama.attribute(PROMPT, max_new_tokens=2, suppress_tokens=(5, 6))
    assert list(out.provenance.generation_config["suppress_tokens"]) == [5, 6]
    path = out.save(tmp_path / f"suppressed{suffix}")
    loaded = FeatureAttributionOutput.load(path)
    assert loaded.provenance == out.provenance
    assert loaded.equals(out)


def test_real_attribution_merge_and_save(real_output, tiny_llama, tmp_path):
    other = tiny_llama.attribute("A quick brown fox", max_new_tokens=2, step_scores=["probability"])
    merged = FeatureAttributionOutput.merge([real_output, other])
    assert len(merged) == 2
    for phase in ("generate", "attribute"):
        assert merged.provenance.timings[phase] == pytest.approx(
            real_output.provenance.timings[phase] + other.provenance.timings[phase]
        )
    loaded = roundtrip(merged, ".safetensors")
    assert_identical(merged, loaded)
    ig = tiny_llama.attribute(PROMPT, method="integrated_gradients", n_steps=4, max_new_tokens=2)
    with pytest.raises(InvalidArgumentError) as info:
        FeatureAttributionOutput.merge([real_output, ig])
    assert info.value.argument == "outputs"
    assert isinstance(info.value, genattrib.GenattribError)
