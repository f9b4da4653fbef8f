"""ReAGent's cost controls: the keep rule (absolute or a ratio), probes cut off by max_steps or
time_budget (a GenattribWarning and the step score reagent_unstopped), the probe pool that
refills with the next targets' probes, and the progress bar of stopped probes."""

from __future__ import annotations

import contextlib
import warnings

import pytest
import torch
from tolerance import OPS, PERTURBATION, assert_close_to_scale

import genattrib.methods.reagent as reagent_module
from genattrib.errors import GenattribWarning, InvalidArgumentError
from genattrib.methods import get_method
from genattrib.methods.probe_pool import ProbePool
from genattrib.methods.reagent import ReAGent, ReAGentParams

pytestmark = pytest.mark.numeric  # floats through other shapes: nox -s tests-portable re-runs them

PROMPT = "The capital of France is"


def _worst_token(model, prompt: str) -> str:
    """The token the model finds least likely after ``prompt``: never in its top-k."""
    ids = model.tokenizer(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model.model(input_ids=ids).logits[0, -1]
    return model.tokenizer.decode([int(logits.argmin())])


def _attribute(model, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = model.attribute(*args, method="reagent", seed=0, **kwargs)
    return out.sequences[0], [w for w in caught if issubclass(w.category, GenattribWarning)]


def test_keep_counts_absolute_and_ratio():
    movable = torch.tensor([1, 4, 10, 33])
    assert ReAGentParams(keep_top_n=5).keep_counts(movable).tolist() == [5, 5, 5, 5]
    assert ReAGentParams(keep_ratio=0.3).keep_counts(movable).tolist() == [1, 2, 3, 10]
    assert ReAGentParams(keep_ratio=0.5, keep_top_n=9).keep_counts(movable).tolist() == [1, 2, 5, 17]


def test_top_positions_keeps_per_row_counts_of_movable_positions():
    scores = torch.tensor([[0.9, 0.1, 0.5, 0.7], [0.2, 0.8, 0.4, 0.6]])
    movable = torch.tensor([[False, True, True, True], [True, True, True, True]])
    keep = ReAGent._top_positions(scores, movable, torch.tensor([2, 3]))
    assert keep.tolist() == [[False, False, True, True], [False, True, True, True]]


@pytest.mark.parametrize(
    "bad", [{"keep_ratio": 0.0}, {"keep_ratio": 1.5}, {"time_budget": 0.0}, {"time_budget": -1.0}, {"keep_top_n": 0}]
)
def test_bad_cost_parameters_fail_before_work(bad):
    with pytest.raises(InvalidArgumentError, match=next(iter(bad))):
        get_method("reagent", **bad)


def test_keep_ratio_equals_the_matching_absolute_count(planted):
    """The planted prompt has 7 movable positions before its first target: keep_ratio=2/7 keeps 2."""
    model, _ = planted
    prompt = "The capital of France is Paris and"
    by_count, _ = _attribute(model, prompt, max_new_tokens=1, keep_top_n=2, stop_top_k=1)
    n = int(by_count.target_positions[0])
    by_ratio, _ = _attribute(model, prompt, max_new_tokens=1, keep_ratio=2 / n, stop_top_k=1, keep_top_n=6)
    assert_close_to_scale(by_ratio.scores, by_count.scores, floor=PERTURBATION, what="keep_ratio vs keep_top_n")
    assert by_ratio.step_scores["reagent_iterations"].tolist() == by_count.step_scores["reagent_iterations"].tolist()


def test_max_steps_cut_off_warns_and_counts_unstopped_probes(tiny_llama):
    """Nothing is replaced (keep_top_n covers the prompt) and the target is the model's least
    likely token: the stopping test can never pass, so every probe runs max_steps and is cut off."""
    target = _worst_token(tiny_llama, PROMPT)
    seq, caught = _attribute(tiny_llama, PROMPT, target=target, keep_top_n=50, stop_top_k=1, max_steps=2, num_probes=3)
    assert seq.step_scores["reagent_iterations"].tolist() == [2.0]
    assert seq.step_scores["reagent_unstopped"].tolist() == [3.0]
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "3 of 3 probes, in 1 of 1 targets, did not stop (max_steps=2)" in message
    assert "Raise max_steps or time_budget" in message and "stop_top_k" in message


def test_probes_that_stop_do_not_warn(tiny_llama):
    """Keeping every position with the model's own greedy tokens passes the stopping test at once."""
    seq, caught = _attribute(tiny_llama, PROMPT, max_new_tokens=3, keep_ratio=0.999, stop_top_k=1, num_probes=3)
    assert seq.step_scores["reagent_iterations"].tolist() == [1.0, 1.0, 1.0]
    assert seq.step_scores["reagent_unstopped"].tolist() == [0.0, 0.0, 0.0]
    assert caught == []


def test_time_budget_cut_off_warns_and_leaves_unprobed_targets_uniform(tiny_llama):
    seq, caught = _attribute(tiny_llama, PROMPT, max_new_tokens=2, num_probes=4, time_budget=1e-9)
    assert seq.step_scores["reagent_iterations"].tolist() == [0.0, 0.0]
    assert seq.step_scores["reagent_unstopped"].tolist() == [4.0, 4.0]
    for j, position in enumerate(seq.target_positions):
        row = seq.scores[j, :position]
        assert_close_to_scale(row, torch.full_like(row, 1 / int(position)), floor=OPS, what="uniform row")
    assert len(caught) == 1 and "time_budget=1e-09s ran out" in str(caught[0].message)
    assert "2 of them never started" in str(caught[0].message)


class _RecordingPool(ProbePool):
    """Records how often a target was admitted while other targets' probes were running."""

    refills_while_busy = 0

    def refill(self) -> None:
        before = self.active.any(-1)
        super().refill()
        if bool(before.any()) and bool((self.active.any(-1) & ~before).any()):
            _RecordingPool.refills_while_busy += 1


def test_pool_refills_and_equals_each_target_alone(tiny_llama, monkeypatch):
    """max_rows=5 with 4 probes a target: one target runs at a time, and the next one joins as
    soon as the running one's probes stop (pool of 5); scores equal running each target alone."""
    monkeypatch.setattr(reagent_module, "ProbePool", _RecordingPool)
    params = {"num_probes": 4, "max_steps": 6, "keep_top_n": 3, "stop_top_k": 20}
    prompts = [PROMPT, "A quick brown fox", "Once upon a time there"]
    pooled = [_attribute(tiny_llama, p, max_new_tokens=3, max_rows=5, **params)[0] for p in prompts]
    assert _RecordingPool.refills_while_busy > 0
    for prompt, seq in zip(prompts, pooled):
        generated = seq.input_ids[seq.prompt_length :]
        for j, position in enumerate(seq.target_positions):
            alone, _ = _attribute(tiny_llama, prompt, target=generated, attr_pos_start=j, attr_pos_end=j + 1, **params)
            assert alone.target_positions == [position]
            assert_close_to_scale(seq.scores[j], alone.scores[0], floor=PERTURBATION, what=f"row {j} pooled vs alone")
            for name in ("reagent_iterations", "reagent_unstopped"):
                assert seq.step_scores[name][j] == alone.step_scores[name][0]


def test_progress_bar_counts_stopped_probes(tiny_llama, monkeypatch):
    seen = {"total": None, "advanced": 0}

    @contextlib.contextmanager
    def fake_bar(total, description):
        seen["total"] = total
        yield lambda: seen.__setitem__("advanced", seen["advanced"] + 1)

    monkeypatch.setattr(reagent_module, "progress_bar", fake_bar)
    seq, _ = _attribute(tiny_llama, PROMPT, max_new_tokens=3, num_probes=4, max_steps=5, keep_top_n=3, stop_top_k=20)
    unstopped = int(seq.step_scores["reagent_unstopped"].sum())
    assert seen["total"] == 12
    assert seen["advanced"] == 12 - unstopped


def test_planner_groups_many_targets_in_one_batch(tiny_llama):
    """A waiting target holds no model rows, so 40 targets of 16 probes share one batch (one
    pool) although 640 rows exceed the row budget."""
    from genattrib.engine.execute import plan_run
    from genattrib.engine.forward import ModelForward
    from genattrib.engine.row_refs import SequenceJob

    job = SequenceJob(torch.arange(2, 202), prompt_length=160, step_start=0, step_stop=40)
    forward = ModelForward(tiny_llama.model)
    assert 40 * 16 > forward.rows_per_chunk(199, grad=False)
    batches = plan_run(forward, get_method("reagent"), [job])
    assert [len(b) for b in batches] == [40]
