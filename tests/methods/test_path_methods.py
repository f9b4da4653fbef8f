"""Path methods from the papers: SIG, DIG and UDIG (completeness, paths, caching, batching)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiny import make_model
from tolerance import OPS, TINY_MODEL, assert_close_to_scale, assert_same_sequence

import genattrib
from genattrib.engine.forward import ModelForward
from genattrib.methods import get_method
from genattrib.methods.discretized_integrated_gradients import (
    DiscretizedIntegratedGradients,
    knn_anchor_search,
)
from genattrib.methods.embedding_neighbours import KnnCache, build_knn_graph, nearest_vocabulary
from genattrib.methods.monotonic_paths import monotonic_path
from genattrib.methods.uniform_discretized_integrated_gradients import uniform_anchor_search

pytestmark = pytest.mark.numeric  # floats through other shapes: nox -s tests-portable re-runs them

SIG, DIG, UDIG = (
    "sequential_integrated_gradients",
    "discretized_integrated_gradients",
    "uniform_discretized_integrated_gradients",
)
WORDS = ["The", " capital", " of", " France", " is", " quick", " fox", " time", " model", " 42", " dog"]
PROMPT, TARGET = "The capital of France is", " Paris. The"
FAST = {SIG: {"n_steps": 6}, DIG: {"n_anchors": 6}, UDIG: {"n_anchors": 6}}
TINY = {SIG: {"n_steps": 2}, DIG: {"n_anchors": 2}, UDIG: {"n_anchors": 2, "factor": 0}}  # for max_rows=1
SLOW_OK = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


@pytest.fixture()
def knn_dir(tmp_path):
    return str(tmp_path / "knn")


def _value(model, embeds, target_id):
    with torch.no_grad():
        return float(model(inputs_embeds=embeds.unsqueeze(0)).logits[0, -1].log_softmax(-1)[target_id])


def _check_monotone(path, base, inputs):
    """The spec's definition: P_0 = baseline, P_-1 = input, each next point between the
    current one and the input in every dimension."""
    assert torch.equal(path[:, 0], base) and torch.equal(path[:, -1], inputs)
    lo, hi = torch.minimum(path[:, :-1], inputs.unsqueeze(1)), torch.maximum(path[:, :-1], inputs.unsqueeze(1))
    assert ((path[:, 1:] >= lo) & (path[:, 1:] <= hi)).all()


# --- SIG ---------------------------------------------------------------------------------------
@settings(max_examples=5, deadline=None, suppress_health_check=SLOW_OK)
@given(
    words=st.lists(st.sampled_from(WORDS), min_size=2, max_size=5),
    kind=st.sampled_from(["llama", "gpt2", "qwen2"]),
    model_seed=st.integers(0, 3),
    baseline=st.sampled_from(["unk", "eos", " the"]),
    step=st.integers(0, 2),
)
def test_sig_each_position_adds_up_to_its_own_leave_one_out(tiny_tokenizer, words, kind, model_seed, baseline, step):
    am = genattrib.load_model((make_model(kind, tiny_tokenizer, seed=model_seed), tiny_tokenizer))
    out = am.attribute("".join(words), target=" is Paris", method=SIG, n_steps=8, baseline=baseline)
    seq = out.sequences[0]
    step = min(step, seq.num_steps - 1)
    p, ids = seq.target_positions[step], seq.input_ids
    emb = am.model.get_input_embeddings()
    base_id = {"unk": am.tokenizer.unk_token_id, "eos": am.tokenizer.eos_token_id}.get(baseline)
    base_id = base_id if base_id is not None else am.tokenizer(baseline, add_special_tokens=False)["input_ids"][0]
    x = emb(ids[:p]).detach()
    f_x = _value(am.model, x, int(ids[p]))
    worst = 0.0
    for i in range(p):  # every position, right side from plain HF forwards
        moved = x.clone()
        moved[i] = emb.weight[base_id].detach()
        expected = f_x - _value(am.model, moved, int(ids[p]))
        got = float(seq.scores[step, i])  # SIG's default: the sum over the hidden size, in forward mode
        assert got == pytest.approx(expected, abs=2e-4 + 1e-3 * abs(expected)), (i, got, expected)
        worst = max(worst, abs(got - expected))
    assert float(seq.step_scores["max_position_error"][step]) <= worst + 1e-4


def test_sig_position_chunk_and_quadrature_options(tiny_llama):
    a = tiny_llama.attribute(PROMPT, target=" dog", method=SIG, n_steps=4)
    b = tiny_llama.attribute(PROMPT, target=" dog", method=SIG, n_steps=4, position_chunk=1)
    assert_close_to_scale(a.sequences[0].scores, b.sequences[0].scores, floor=TINY_MODEL, what="position_chunk=1")
    coarse = tiny_llama.attribute(PROMPT, target=" dog", method=SIG, n_steps=1, quadrature="riemann_left")
    assert (
        coarse.sequences[0].step_scores["max_position_error"].max()
        > 10 * a.sequences[0].step_scores["max_position_error"].max()
    )


# --- every method: completeness step score, special tokens, batching ----------------------------
@pytest.mark.parametrize("method", [SIG, DIG, UDIG])
def test_completeness_error_is_measured_against_plain_forwards(tiny_model, method, knn_dir):
    params = {**FAST[method], **({"cache_dir": knn_dir} if method == DIG else {})}
    out = tiny_model.attribute("<bos>" + PROMPT, target=TARGET, method=method, keep_granular=True, **params)
    seq, emb = out.sequences[0], tiny_model.model.get_input_embeddings()
    assert seq.tokens[0] == "<bos>" and bool(seq.held_fixed[0])
    assert (seq.granular_scores[:, 0] == 0).all(), "special tokens keep their embedding"
    default = tiny_model.attribute("<bos>" + PROMPT, target=TARGET, method=method, **params).sequences[0]
    assert (default.scores[:, 0] == 0).all()  # SIG's default: forward mode, no granular scores
    assert_close_to_scale(default.scores, seq.scores, floor=TINY_MODEL, what="reduced vs granular run")
    unk = emb.weight[tiny_model.tokenizer.unk_token_id].detach()
    for step, p in enumerate(seq.target_positions):
        x = emb(seq.input_ids[:p]).detach()
        base = torch.where(seq.held_fixed[:p].unsqueeze(-1), x, unk)
        delta = _value(tiny_model.model, x, int(seq.input_ids[p])) - _value(
            tiny_model.model, base, int(seq.input_ids[p])
        )
        err = float(seq.step_scores["completeness_error"][step])
        assert float(seq.scores[step, :p].sum()) - err == pytest.approx(delta, abs=1e-4)
    assert torch.isfinite(seq.step_scores["completeness_error"]).all()


@pytest.mark.parametrize("method", [SIG, DIG, UDIG])
def test_batched_equals_one_at_a_time_and_any_chunk_size(tiny_llama, method, knn_dir):
    params = {**TINY[method], **({"cache_dir": knn_dir} if method == DIG else {})}
    prompts, targets = [PROMPT, "The capital of Italy"], [" dog", " is"]  # 2 + 1 tiny-tokenizer targets
    together = tiny_llama.attribute(prompts, target=targets, method=method, **params)
    tiny = tiny_llama.attribute(prompts, target=targets, method=method, max_rows=1, **params)
    for k, (p, t) in enumerate(zip(prompts, targets)):
        alone = tiny_llama.attribute(p, target=t, method=method, **params)
        for other in (alone.sequences[0], tiny.sequences[k]):
            assert_same_sequence(together.sequences[k], other, floor=TINY_MODEL, what=f"prompt {k}")


# --- DIG / UDIG paths ----------------------------------------------------------------------------
class StraightDIG(DiscretizedIntegratedGradients):
    """Anchors forced onto the straight line: the word side first, as the search orders them."""

    def search_anchors(self, words, inputs, base, vocab, forward):
        m = self.params.n_anchors
        alphas = torch.arange(m, 0, -1, dtype=torch.float32) / (m + 1)
        return base.unsqueeze(1) + alphas.view(1, m, 1) * (inputs - base).unsqueeze(1)


@pytest.mark.parametrize("m", [1, 7])
def test_dig_on_the_straight_line_equals_ig_left_riemann(tiny_model, m):
    dig = tiny_model.attribute(PROMPT, target=TARGET, method=StraightDIG(n_anchors=m, cache_dir=False))
    ig = tiny_model.attribute(
        PROMPT, target=TARGET, method="integrated_gradients", n_steps=m + 1, quadrature="riemann_left"
    )
    a, b = dig.sequences[0], ig.sequences[0]
    assert_same_sequence(a, b, floor=TINY_MODEL, what="DIG on the line vs IG", step_scores=["completeness_error"])


@settings(max_examples=10, deadline=None, suppress_health_check=SLOW_OK)
@given(
    method=st.sampled_from([DIG, UDIG]),
    strategy=st.sampled_from(["greedy", "maxcount"]),
    m=st.integers(1, 12),
    factor=st.integers(0, 2),
    baseline=st.sampled_from(["unk", "zero", " the"]),
    words=st.lists(st.integers(0, 319), min_size=1, max_size=6),
)
def test_dig_and_udig_paths_are_monotone_from_baseline_to_input(
    tiny_llama, method, strategy, m, factor, baseline, words
):
    attributor = get_method(
        method, n_anchors=m, factor=factor, strategy=strategy, **({"cache_dir": False} if method == DIG else {})
    )
    forward = ModelForward(tiny_llama.model)
    weight = forward.embedding.weight.detach()
    ids = torch.tensor(words)
    base_id = (
        tiny_llama.tokenizer.unk_token_id if baseline == "unk" else tiny_llama.tokenizer.convert_tokens_to_ids("Ġthe")
    )
    base = (
        torch.zeros(len(words), weight.shape[1])
        if baseline == "zero"
        else weight[base_id].expand(len(words), -1).clone()
    )
    path = attributor.paths(ids, weight[ids], base, forward)
    assert (
        path.shape
        == (len(words), 2**factor * (m + 1) + 1, weight.shape[1])
        == (len(words), attributor.n_points, weight.shape[1])
    )
    _check_monotone(path, base, weight[ids])


def _vocab_rows(anchors, vocab):
    """Index of the vocabulary row each anchor equals, -1 for none."""
    same = (anchors.unsqueeze(-2) == vocab).all(-1)
    return torch.where(same.any(-1), same.float().argmax(-1), -1)


def test_anchor_searches_pick_real_words_then_fall_back():
    """A 5-word vocabulary runs out of candidates: DIG falls back to the baseline (and stays),
    UDIG to the uniform points; neither crashes and both paths stay monotone."""
    vocab = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    words, base = torch.tensor([1, 2]), vocab[0].expand(2, -1).clone()
    graph = build_knn_graph(vocab, 10, show_progress=False)
    assert graph.indices.shape == (5, 4) and not (graph.indices == torch.arange(5).unsqueeze(1)).any()
    alphas = torch.arange(8, 0, -1) / 9
    uniform = base.unsqueeze(1) + alphas.view(1, 8, 1) * (vocab[words] - base).unsqueeze(1)
    for strategy in ("greedy", "maxcount"):
        dig = knn_anchor_search(words, vocab[words], base, vocab, graph.indices, 8, strategy)
        udig = uniform_anchor_search(words, vocab[words], base, vocab, 8, 50, strategy)
        for w, word in enumerate(words.tolist()):
            others = sorted({1, 2, 3, 4} - {word})  # neither the word nor the baseline
            assert sorted(_vocab_rows(dig[w, :3], vocab).tolist()) == others
            assert sorted(_vocab_rows(udig[w, :3], vocab).tolist()) == others
        assert torch.equal(dig[:, 3:], base.unsqueeze(1).expand(-1, 5, -1))  # baseline, and it stays
        assert_close_to_scale(udig[:, 3:], uniform[:, 3:], floor=OPS, what="uniform points")
        for anchors in (dig, udig):
            _check_monotone(monotonic_path(vocab[words], anchors, base, 1), base, vocab[words])


def test_udig_runs_with_a_single_candidate_per_point(tiny_llama):
    out = tiny_llama.attribute(PROMPT, target=" Paris", method=UDIG, n_anchors=20, nbrs=1, factor=0)
    assert torch.isfinite(out.sequences[0].scores[0, : out.sequences[0].target_positions[0]]).all()


def test_bad_parameters_fail_early(tiny_llama):
    for method, params in [
        (DIG, {"strategy": "best"}),
        (DIG, {"n_anchors": 0}),
        (UDIG, {"nbrs": 0}),
        (DIG, {"cache_dir": 3}),
        (SIG, {"position_chunk": 0}),
        (SIG, {"quadrature": "simpson"}),
    ]:
        with pytest.raises(genattrib.InvalidArgumentError, match=next(iter(params))):
            tiny_llama.attribute(PROMPT, target=" Paris", method=method, **params)


# --- nearest neighbours and the k-NN cache -----------------------------------------------------
def test_nearest_vocabulary_matches_cdist():
    gen = torch.Generator().manual_seed(1)
    vocab, queries = torch.randn(300, 8, generator=gen), torch.randn(7, 8, generator=gen)
    ids, dists = nearest_vocabulary(queries, vocab, 5)
    ref = torch.cdist(queries, vocab).topk(5, largest=False)
    assert torch.equal(ids, ref.indices)
    assert_close_to_scale(dists, ref.values, floor=OPS, what="distances vs cdist")  # |x|²+|y|²−2x·y vs direct


def test_knn_graph_is_cached_on_disk_and_keyed_by_the_matrix(tmp_path):
    vocab = torch.randn(3000, 64, generator=torch.Generator().manual_seed(2))
    first = KnnCache(tmp_path)
    start = time.perf_counter()
    built = first.get(vocab, 20, "tiny/model")
    build_s = time.perf_counter() - start
    assert first.last_source == "built" and len(list(tmp_path.glob("*.safetensors"))) == 1
    assert first.get(vocab, 20, "tiny/model") is built and first.last_source == "memory"
    second = KnnCache(tmp_path)
    start = time.perf_counter()
    loaded = second.get(vocab, 20, "tiny/model")
    assert second.last_source == "disk" and time.perf_counter() - start < build_s
    assert torch.equal(loaded.indices, built.indices) and torch.equal(loaded.distances, built.distances)
    changed = vocab.clone()
    changed[5, 0] += 1e-3
    other = second.get(changed, 20, "tiny/model")
    assert second.last_source == "built" and other.fingerprint != built.fingerprint
    assert len(list(tmp_path.glob("*.safetensors"))) == 2
    assert KnnCache(False).get(vocab, 20).fingerprint == built.fingerprint and not list(tmp_path.glob(".knn-*"))


def test_dig_defaults_to_the_authors_500_neighbours(tiny_llama, knn_dir):
    """knn.py of INK-USC/DIG keeps 500 neighbours per word (Inseq: 50); the graph is capped at
    vocabulary - 1 on small vocabularies."""
    method = get_method(DIG, cache_dir=knn_dir)
    assert method.params.n_neighbors == 500
    tiny_llama.attribute("The capital of France is", " Paris", method=method, n_anchors=3)
    (path,) = Path(knn_dir).glob("*.safetensors")
    k = min(500, tiny_llama.model.get_input_embeddings().weight.shape[0] - 1)
    assert f"-k{k}-" in path.name


# --- the embedded default model ----------------------------------------------------------------
@pytest.mark.default_model
@pytest.mark.parametrize(
    "method,params", [(SIG, {"n_steps": 2}), (DIG, {"n_anchors": 2}), (UDIG, {"n_anchors": 2, "factor": 0})]
)
def test_default_model_runs_each_path_method(default_model, method, params):
    out = default_model.attribute("The capital of France is", max_new_tokens=8, method=method, **params)
    seq = out.sequences[0]
    assert seq.num_steps == 8
    for j, p in enumerate(seq.target_positions):
        assert torch.isfinite(seq.scores[j, :p]).all() and seq.scores[j, p:].isnan().all()
    assert torch.isfinite(seq.step_scores["completeness_error"]).all()
    if method == SIG:  # forward mode runs on the real model (dual rows, no backward pass)
        assert out.provenance.work["grad_rows"] == 0 and out.provenance.work["rows"] > 0
    else:
        assert out.provenance.work["grad_rows"] > 0
