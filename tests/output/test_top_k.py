"""Top-k sparse scores (SparseScores, attribute(top_k_scores=...)) and the granular memory budget."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from genattrib import FeatureAttributionOutput, InvalidArgumentError
from genattrib.methods import method_class
from genattrib.models.results.storage import check_storage
from genattrib.output import Provenance, SequenceAttribution
from genattrib.output.rows import MemorySink, RowBlock
from genattrib.output.scores import SparseScores

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
PROMPT = "The capital of France is"
SPECIAL = [math.nan, math.inf, -math.inf, 0.0, -0.0]


@st.composite
def matrices(draw: st.DrawFn, dyadic: bool = False, rows: int = 5, positions: int = 12) -> torch.Tensor:
    """Score matrices like the engine's: each row NaN from some limit on, a few NaN/inf before it.

    ``dyadic``: multiples of 1/1024 below 2**10, whose float64 sums are exact."""
    r = draw(st.integers(0, rows))
    p = draw(st.integers(0, positions))
    if dyadic:
        value = st.integers(-(2**20), 2**20).map(lambda i: i / 1024)
    else:
        value = st.floats(width=32, allow_nan=False, allow_infinity=False)
    cell = st.one_of(value, value, value, st.sampled_from(SPECIAL))
    data = [[draw(cell) for _ in range(p)] for _ in range(r)]
    dense = torch.tensor(data, dtype=torch.float32).reshape(r, p)
    for j in range(r):
        dense[j, draw(st.integers(0, p)) :] = math.nan
    return dense


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    nan_a, nan_b = a.isnan(), b.isnan()
    if a.shape != b.shape or not torch.equal(nan_a, nan_b):
        return False
    return torch.equal(a.masked_fill(nan_a, 0), b.masked_fill(nan_b, 0))


# --- SparseScores ------------------------------------------------------------------------------------
@SETTINGS
@given(dense=matrices(), k=st.integers(1, 14))
def test_top_k_keeps_the_k_largest_exactly(dense, k):
    sparse = SparseScores.from_dense(dense, k)
    back = sparse.dense()
    assert back.shape == dense.shape
    assert torch.equal(back.isnan(), dense.isnan())  # NaN is never dropped, nothing else becomes NaN
    for j in range(dense.shape[0]):
        row = dense[j].tolist()
        finite = [i for i, v in enumerate(row) if math.isfinite(v)]
        expected = sorted(finite, key=lambda i: (-abs(row[i]), i))[:k]  # ties: the lower position first
        kept = sparse.indices[sparse.indptr[j] : sparse.indptr[j + 1]].tolist()
        nonfinite_before_limit = [i for i, v in enumerate(row) if not math.isfinite(v) and i < int(sparse.limit[j])]
        assert kept == sorted(expected + nonfinite_before_limit)
        for i in range(len(row)):
            if i in kept or math.isnan(row[i]):
                assert same(back[j, i : i + 1], dense[j, i : i + 1])
            else:
                assert back[j, i].item() == 0.0  # dropped cells read 0
        assert int(sparse.dropped[j]) == len(finite) - len(expected)


@SETTINGS
@given(dense=matrices(dyadic=True), k=st.integers(1, 14))
def test_residual_is_exact(dense, k):
    sparse = SparseScores.from_dense(dense, k)
    kept_plus_residual = sparse.dense().double().nansum(-1) + sparse.residual
    assert same(kept_plus_residual, dense.double().nansum(-1))


@SETTINGS
@given(dense=matrices(), k=st.integers(1, 14))
def test_residual_is_the_sum_of_the_dropped_scores(dense, k):
    sparse = SparseScores.from_dense(dense, k)
    back = sparse.dense()
    for j in range(dense.shape[0]):
        dropped = [v for v, w in zip(dense[j].tolist(), back[j].tolist()) if math.isfinite(v) and v != w]
        dropped += [0.0] * (int(sparse.dropped[j]) - len(dropped))  # dropped zeros read 0 too
        assert len(dropped) == int(sparse.dropped[j])
        assert sparse.residual[j].item() == pytest.approx(math.fsum(dropped), rel=1e-12, abs=1e-300)


@SETTINGS
@given(dense=matrices())
def test_k_at_least_the_positions_is_the_dense_matrix(dense):
    sparse = SparseScores.from_dense(dense, max(1, dense.shape[1]))
    assert same(sparse.dense(), dense)
    assert not sparse.dropped.any() and not sparse.residual.any()


@SETTINGS
@given(dense=matrices(), k=st.integers(1, 5), data=st.data())
def test_rows_of_sparse_scores_match_rows_of_the_dense_form(dense, k, data):
    sparse = SparseScores.from_dense(dense, k)
    back = sparse.dense()
    n = dense.shape[0]
    order = data.draw(st.lists(st.integers(0, max(0, n - 1)), max_size=6)) if n else []
    assert same(sparse.take(order).dense(), back[order].reshape(len(order), dense.shape[1]))
    start, stop = data.draw(st.integers(-6, 6)), data.draw(st.integers(-6, 6))
    assert same(sparse.select(slice(start, stop)).dense(), back[start:stop])
    for j in range(n):
        assert same(sparse.row(j), back[j])
    if n:
        halves = SparseScores.concat([sparse.select(slice(0, n // 2)), sparse.select(slice(n // 2, None))])
        assert halves.equals(sparse)


def test_from_dense_refuses_k_below_one():
    with pytest.raises(ValueError, match="k must be >= 1"):
        SparseScores.from_dense(torch.zeros(1, 3), 0)


def test_memory_sink_assembles_sparse_blocks_in_row_order():
    dense = torch.arange(12, dtype=torch.float32).reshape(3, 4) - 5
    sink = MemorySink([(3, 4)], top_k=2)
    sink.add([RowBlock(0, torch.tensor([2, 0]), SparseScores.from_dense(dense[[2, 0]], 2))])
    sink.add([RowBlock(0, torch.tensor([1]), SparseScores.from_dense(dense[[1]], 2))])
    assert sink.result(0)[0].equals(SparseScores.from_dense(dense, 2))


# --- sequences and files ---------------------------------------------------------------------------------
def sparse_output(dense: torch.Tensor, k: int) -> FeatureAttributionOutput:
    n = dense.shape[1]
    seq = SequenceAttribution(
        input_ids=torch.arange(n),
        tokens=[f"t{i}" for i in range(n)],
        prompt_length=0,
        scores=SparseScores.from_dense(dense, k),
        step_scores={"probability": torch.rand(dense.shape[0])},
    )
    return FeatureAttributionOutput([seq], Provenance(model_name="m", method="saliency"))


@pytest.mark.parametrize("suffix", [".json", ".safetensors"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dense=matrices(), k=st.integers(1, 6))
def test_sparse_result_saves_and_loads_sparse(dense, k, suffix, tmp_path_factory):
    out = sparse_output(dense, k)
    path = out.save(tmp_path_factory.mktemp("sparse") / f"r{suffix}")
    back = FeatureAttributionOutput.load(path)
    assert back.equals(out)
    assert back.sequences[0].sparse_scores.equals(out.sequences[0].sparse_scores)
    assert same(back.sequences[0].scores, out.sequences[0].scores)


def test_saved_sparse_file_holds_no_dense_matrix(tmp_path):
    from safetensors import safe_open

    out = sparse_output(torch.randn(50, 400), 3)
    path = out.save(tmp_path / "r.safetensors")
    with safe_open(str(path), framework="pt") as f:
        names = set(f.keys())  # noqa: SIM118
    assert "0.scores" not in names and "0.sparse.values" in names
    dense = copy.deepcopy(out)
    dense.sequences[0].scores = out.sequences[0].scores.clone()
    dense_path = dense.save(tmp_path / "d.safetensors")
    matrix = out.sequences[0].scores.numel() * 4  # 80 kB; 3 kept cells of 400 per row take 1.8 kB
    assert dense_path.stat().st_size - path.stat().st_size > 0.9 * matrix


def test_equals_tells_sparse_from_dense_with_the_same_densified_scores():
    dense = torch.tensor([[1.0, 0.0, math.nan]])
    sparse = sparse_output(dense, 1)
    plain = copy.deepcopy(sparse)
    plain.sequences[0].scores = sparse.sequences[0].scores.clone()
    assert same(plain.sequences[0].scores, sparse.sequences[0].scores)
    assert not sparse.sequences[0].equals(plain.sequences[0])


def test_steps_of_a_sparse_sequence_stay_sparse():
    out = sparse_output(torch.randn(4, 6), 2)
    part = out.sequences[0].steps(1, 3)
    assert part.sparse_scores is not None
    assert same(part.scores, out.sequences[0].scores[1:3])
    assert torch.equal(part.sparse_scores.residual, out.sequences[0].sparse_scores.residual[1:3])


# --- attribute(top_k_scores=...) ---------------------------------------------------------------------------
def test_top_k_none_is_the_dense_result(tiny_llama):
    a = tiny_llama.attribute(PROMPT, " Paris. The capital", method="saliency")
    b = tiny_llama.attribute(PROMPT, " Paris. The capital", method="saliency", top_k_scores=None)
    assert all(x.equals(y) for x, y in zip(a.sequences, b.sequences))
    assert a.sequences[0].sparse_scores is None
    assert b.provenance.storage["top_k_scores"] is None


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients", "occlusion"])
def test_top_k_result_is_the_dense_result_cut(tiny_llama, method):
    dense = tiny_llama.attribute([PROMPT, "Once upon a"], [" Paris. The", " time there"], method=method)
    top = tiny_llama.attribute([PROMPT, "Once upon a"], [" Paris. The", " time there"], method=method, top_k_scores=2)
    assert top.provenance.storage["top_k_scores"] == 2
    for d, t in zip(dense.sequences, top.sequences):
        expected = SparseScores.from_dense(d.scores, 2)
        assert t.sparse_scores.equals(expected)
        assert t.granular_scores is None
        total = t.scores.double().nansum(-1) + t.sparse_scores.residual
        torch.testing.assert_close(total, d.scores.double().nansum(-1), rtol=1e-12, atol=1e-12)


def test_top_k_at_least_every_position_equals_dense(tiny_llama):
    dense = tiny_llama.attribute(PROMPT, " Paris. The capital", method="saliency")
    top = tiny_llama.attribute(PROMPT, " Paris. The capital", method="saliency", top_k_scores=1000)
    assert same(top.sequences[0].scores, dense.sequences[0].scores)
    assert not top.sequences[0].sparse_scores.dropped.any()


def test_aggregation_and_rendering_work_on_a_top_k_result(tiny_llama):
    top = tiny_llama.attribute(PROMPT, " Paris. The capital", method="saliency", top_k_scores=2, explain="sentences")
    words = tiny_llama.attribute(PROMPT, " Paris. The capital", method="saliency", top_k_scores=2).aggregate("words")
    assert words.sequences[0].num_steps >= 1 and words.sequences[0].sparse_scores is None
    assert not words.sequences[0].scores[:, : words.sequences[0].prompt_length].isnan().all()
    buffer = io.StringIO()
    top.show(console=Console(file=buffer, width=120))
    assert "Paris" in buffer.getvalue()
    assert "<html" in top.to_html().lower()


def test_top_k_results_are_made_sparse_batch_by_batch(tiny_llama, monkeypatch):
    """The dense matrix of a whole sequence is never built: the runner only makes per-batch blocks."""
    made: list[tuple[int, ...]] = []
    original = SparseScores.from_dense.__func__

    def spy(cls, dense, k):
        made.append(tuple(dense.shape))
        return original(cls, dense, k)

    monkeypatch.setattr(SparseScores, "from_dense", classmethod(spy))
    out = tiny_llama.attribute(PROMPT, " Paris. The capital of", method="saliency", top_k_scores=3, max_rows=2)
    rows = out.sequences[0].num_steps
    assert len(made) > 1 and all(shape[0] <= 2 for shape in made) and sum(s[0] for s in made) == rows


@pytest.mark.parametrize("bad", [0, -3])
def test_bad_top_k_is_refused(tiny_llama, bad):
    with pytest.raises(InvalidArgumentError, match="top_k") as err:
        tiny_llama.attribute(PROMPT, " Paris.", top_k_scores=bad)
    assert err.value.argument == "top_k_scores" and "top_k_scores=" in err.value.fix


@pytest.mark.parametrize(
    ("arguments", "name"),
    [
        ({"top_k_scores": 2.5}, "top_k_scores"),
        ({"top_k_scores": True}, "top_k_scores"),
        ({"top_k_scores": "5"}, "top_k_scores"),
        ({"granular_budget_mb": None}, "granular_budget_mb"),
        ({"granular_budget_mb": "big"}, "granular_budget_mb"),
        ({"stream_to": 5}, "stream_to"),
        ({"stream_to": ""}, "stream_to"),
    ],
)
def test_values_of_the_wrong_type_are_refused_by_name(arguments, name):
    """What attribute() does with them when the test suite's type checker does not stop them first."""
    with pytest.raises(InvalidArgumentError) as err:
        check_storage(**arguments)
    assert err.value.argument == name


def test_top_k_with_keep_granular_true_is_refused(tiny_llama):
    with pytest.raises(InvalidArgumentError, match="granular") as err:
        tiny_llama.attribute(PROMPT, " Paris.", method="input_x_gradient", top_k_scores=3, keep_granular=True)
    assert err.value.argument == "keep_granular"


# --- granular budget ------------------------------------------------------------------------------------------
def granular_method() -> str:
    return "input_x_gradient" if method_class("input_x_gradient").traits.granular else "saliency"


def test_granular_budget_is_recorded_and_bounds_what_is_kept(tiny_llama):
    method = granular_method()
    assert method_class(method).traits.granular
    kept = tiny_llama.attribute(PROMPT, " Paris.", method=method)
    assert kept.sequences[0].granular_scores is not None
    assert kept.provenance.storage == {
        "granular_budget_mb": 256.0,
        "granular_kept": True,
        "top_k_scores": None,
        "stream_to": None,
    }
    size = kept.sequences[0].granular_scores.numel() * 4
    small = tiny_llama.attribute(PROMPT, " Paris.", method=method, granular_budget_mb=(size - 1) / 2**20)
    assert small.sequences[0].granular_scores is None
    assert small.provenance.storage["granular_kept"] is False
    assert same(small.sequences[0].scores, kept.sequences[0].scores)
    exact = tiny_llama.attribute(PROMPT, " Paris.", method=method, granular_budget_mb=size / 2**20)
    assert exact.sequences[0].granular_scores is not None


def test_keep_granular_true_over_the_budget_raises_before_attributing(tiny_llama, monkeypatch):
    method = granular_method()
    cls = method_class(method)

    def never(*args, **kwargs):
        raise AssertionError("attributed a row although the call was refused")

    monkeypatch.setattr(cls, "attribute", never)
    with pytest.raises(InvalidArgumentError, match="granular_budget_mb") as err:
        tiny_llama.attribute(PROMPT, " Paris.", method=method, keep_granular=True, granular_budget_mb=0.001)
    assert err.value.argument == "keep_granular"
    assert "granular_budget_mb=" in err.value.fix and "keep_granular=None" in err.value.fix


@pytest.mark.parametrize("bad", [-1, math.nan, math.inf])
def test_bad_granular_budget_is_refused(tiny_llama, bad):
    with pytest.raises(InvalidArgumentError, match="granular_budget_mb"):
        tiny_llama.attribute(PROMPT, " Paris.", granular_budget_mb=bad)


def test_user_arguments_are_not_mutated(tiny_llama):
    prompts = [PROMPT, "Once upon a"]
    continuation = [" Paris.", " time"]
    saved = (list(prompts), list(continuation))
    tiny_llama.attribute(prompts, continuation, top_k_scores=2, granular_budget_mb=1.0)
    assert (prompts, continuation) == saved


def test_a_sparse_sequence_rebuilds_from_its_fields():
    seq = sparse_output(torch.randn(3, 5), 2).sequences[0]
    again = SequenceAttribution(**seq.__dict__)
    assert again.equals(seq) and again.sparse_scores is seq.sparse_scores
    assert isinstance(seq.__dict__["scores"], SparseScores)  # the store itself, not a dense copy
