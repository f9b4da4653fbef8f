"""``ModelForward.run_chunked``, the one way to run chunked model calls: it covers every row
once, halves a chunk that runs out of memory, runs forward-only chunks without autograd, counts
rows, and sizes forward-only rows on their own (much smaller than forward+backward rows)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genattrib.engine.forward import MAX_ROWS_PER_CHUNK, ModelForward

pytestmark = pytest.mark.numeric  # floats through other shapes: nox -s tests-portable re-runs them


@pytest.fixture
def forward(tiny_llama) -> ModelForward:
    return ModelForward(tiny_llama.model)


@settings(max_examples=30, deadline=None)
@given(total=st.integers(0, 40), cap=st.integers(1, 9), grad=st.booleans())
def test_chunks_cover_every_row_once_and_are_counted(tiny_llama, total: int, cap: int, grad: bool) -> None:
    forward = ModelForward(tiny_llama.model, max_rows=cap)
    covered: list[int] = []
    forward.run_chunked(total, 7, lambda chunk: covered.extend(range(chunk.start, chunk.stop)), grad=grad)
    assert covered == list(range(total))
    assert forward.rows_run == total and forward.grad_rows_run == (total if grad else 0)


def test_forward_only_chunks_run_without_autograd(forward: ModelForward) -> None:
    modes: list[bool] = []
    forward.run_chunked(3, 5, lambda chunk: modes.append(torch.is_grad_enabled()), grad=False)
    forward.run_chunked(3, 5, lambda chunk: modes.append(torch.is_grad_enabled()), grad=True)
    assert modes[0] is False and modes[-1] is True


def test_an_oom_chunk_is_halved_retried_and_later_chunks_stay_small(forward: ModelForward) -> None:
    forward.user_max_rows = 8
    sizes: list[int] = []

    def run(chunk: slice) -> None:
        sizes.append(chunk.stop - chunk.start)
        if chunk.stop - chunk.start > 3:
            raise RuntimeError("DefaultCPUAllocator: out of memory (simulated)")

    forward.run_chunked(10, 5, run, grad=False)
    assert sizes == [8, 4, 2, 2, 2, 2, 2]
    assert forward.rows_run == 10  # failed attempts are not counted


def test_a_single_row_that_runs_out_of_memory_raises(forward: ModelForward) -> None:
    forward.user_max_rows = 1

    def run(chunk: slice) -> None:
        raise torch.OutOfMemoryError("out of memory (simulated)")

    with pytest.raises(torch.OutOfMemoryError):
        forward.run_chunked(2, 5, run, grad=True)


def test_forward_only_rows_are_sized_on_their_own(tiny_llama) -> None:
    import copy

    forward = ModelForward(tiny_llama.model)
    deep = ModelForward(tiny_llama.model)
    deep.config = copy.deepcopy(tiny_llama.model.config)
    deep.config.num_hidden_layers *= 10
    for length in (8, 64, 512):
        # a forward+backward row keeps every layer's activations (and their gradients): it grows
        # with depth; a forward-only row holds about one layer's working set at a time: it does not
        assert deep.row_bytes(length, grad=True) > 5 * forward.row_bytes(length, grad=True)
        assert deep.row_bytes(length, grad=False) == forward.row_bytes(length, grad=False)
        assert forward.row_bytes(length, grad=False) < forward.row_bytes(length, grad=True)
        # a model of real depth fits more forward-only rows in a chunk, even with the CPU's
        # smaller forward-only budget (CPU_FORWARD_BYTES)
        assert deep.rows_per_chunk(length, grad=False) >= deep.rows_per_chunk(length, grad=True)
    assert forward.rows_per_chunk(8, grad=False) <= MAX_ROWS_PER_CHUNK


@settings(max_examples=50, deadline=None)
@given(
    lengths=st.lists(st.tuples(st.integers(1, 60), st.integers(1, 12)), min_size=1, max_size=6),
    budget=st.integers(1, 300),
    per_target=st.integers(1, 16),
)
def test_planned_batches_bound_padding_and_cover_every_target(lengths, budget, per_target) -> None:
    """Every target is planned exactly once, and no batch holds a row shorter than MIN_FILL of
    its longest (rows are padded to the longest)."""
    from genattrib.engine.planner import MIN_FILL, plan_batches
    from genattrib.engine.row_refs import SequenceJob, rows_of

    jobs = [SequenceJob(torch.zeros(p + n, dtype=torch.long), p, 0, n) for p, n in lengths]
    batches = plan_batches(jobs, lambda length: per_target, lambda length: budget, by_sequence=False)
    planned = sorted((r.job, r.row) for batch in batches for r in batch)
    assert planned == sorted((r.job, r.row) for r in rows_of(jobs))
    for batch in batches:
        longest = max(r.position for r in batch)
        assert all(r.position >= MIN_FILL * longest for r in batch)
        assert len(batch) == 1 or len(batch) * per_target <= max(budget, per_target)


def test_cpu_forward_only_chunks_stay_within_their_working_memory(tiny_llama, monkeypatch) -> None:
    """On the CPU a chunk of forward-only rows gets at most CPU_FORWARD_BYTES (long rows would
    otherwise grow the process by gigabytes)."""
    from genattrib.engine import forward as fw

    monkeypatch.setattr(fw, "MAX_ROWS_PER_CHUNK", 10**9)  # see the memory rule, not the row cap
    forward = fw.ModelForward(tiny_llama.model)
    for length in (64, 2048, 16384):
        rows = forward.rows_per_chunk(length, grad=False)
        assert rows == 1 or rows * forward.row_bytes(length, grad=False) <= fw.CPU_FORWARD_BYTES
