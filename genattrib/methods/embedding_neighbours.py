"""Nearest vocabulary embeddings: brute-force search in chunks and a cached k-NN graph.

The k-NN graph over the input-embedding matrix (used by DIG's anchor search) is built once per
model with chunked ``addmm`` + ``topk`` on the embedding's device and cached on disk as a
safetensors file keyed by the model identity and a hash of the embedding matrix; a
:class:`KnnCache` held by the method instance also keeps it in memory between batches.

Example:
    >>> vocab = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    >>> nearest_vocabulary(vocab[:1] + 0.9, vocab, 2)[0].tolist()
    [[1, 0]]
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from jaxtyping import Float, Int
from safetensors.torch import load_file, save_file
from torch import Tensor

from genattrib.cache import cache_root
from genattrib.progress import bar_output, progress_bar

_CHUNK_BYTES = 256 << 20  # one chunk's distance matrix


@dataclass(frozen=True)
class KnnGraph:
    """``indices[v]``: the ``k`` nearest other vocabulary entries of ``v`` (nearest first)."""

    indices: Int[Tensor, "vocab k"]
    distances: Float[Tensor, "vocab k"]
    fingerprint: str


def embedding_fingerprint(vocab: Float[Tensor, "vocab hidden"], rows_per_chunk: int = 8192) -> str:
    """sha256 of the matrix as float32 bytes (hashed in chunks, so no full CPU copy)."""
    digest = hashlib.sha256(f"{tuple(vocab.shape)}".encode())
    for start in range(0, int(vocab.shape[0]), rows_per_chunk):
        block = vocab[start : start + rows_per_chunk].detach().to("cpu", torch.float32).contiguous()
        digest.update(block.numpy().tobytes())
    return digest.hexdigest()


def nearest_vocabulary(
    queries: Float[Tensor, "query hidden"],
    vocab: Float[Tensor, "vocab hidden"],
    k: int,
    skip: Int[Tensor, " query"] | None = None,
    on_chunk=None,
) -> tuple[Int[Tensor, "query k"], Float[Tensor, "query k"]]:
    """The ``k`` vocabulary rows nearest to each query (Euclidean), nearest first, and their
    distances. ``skip[q]`` is a vocabulary index excluded for query ``q`` (e.g. itself)."""
    vocab = vocab.float()
    queries = queries.to(device=vocab.device, dtype=torch.float32)
    k = min(k, int(vocab.shape[0]) - (1 if skip is not None else 0))
    norms = (vocab * vocab).sum(-1)
    chunk = max(1, _CHUNK_BYTES // (4 * int(vocab.shape[0])))
    ids = torch.empty(queries.shape[0], k, dtype=torch.long, device=vocab.device)
    dists = torch.empty(queries.shape[0], k, dtype=torch.float32, device=vocab.device)
    for start in range(0, int(queries.shape[0]), chunk):
        q = queries[start : start + chunk]
        # |v|^2 - 2 q.v ranks like |q - v|^2 (|q|^2 is constant per row)
        score = torch.addmm(norms.unsqueeze(0), q, vocab.T, beta=1.0, alpha=-2.0)
        if skip is not None:
            own = skip[start : start + chunk].to(vocab.device)
            score[torch.arange(q.shape[0], device=vocab.device), own] = float("inf")
        top, index = score.topk(k, dim=-1, largest=False)
        ids[start : start + chunk] = index
        dists[start : start + chunk] = (top + (q * q).sum(-1, keepdim=True)).clamp(min=0).sqrt()
        if on_chunk is not None:
            on_chunk()
    return ids, dists


def build_knn_graph(vocab: Float[Tensor, "vocab hidden"], k: int, show_progress: bool | None = None) -> KnnGraph:
    """The k-NN graph of ``vocab`` (self excluded), with a transient progress bar on a terminal or
    in a notebook when the build is large enough to take more than about a second."""
    n = int(vocab.shape[0])
    chunk = max(1, _CHUNK_BYTES // (4 * n))
    if show_progress is None:
        show_progress = bar_output() != "log" and n * n * int(vocab.shape[1]) > 2e10

    with progress_bar(-(-n // chunk), "k-NN graph of the vocabulary", show_progress) as advance:
        ids, dists = nearest_vocabulary(vocab, vocab, k, skip=torch.arange(n), on_chunk=advance)
    return KnnGraph(ids, dists, embedding_fingerprint(vocab))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[-60:] or "model"


class KnnCache:
    """k-NN graphs of embedding matrices: in memory for this instance, on disk across runs.

    ``directory=None`` uses ``cache_root() / "knn"``; ``directory=False`` keeps memory only.
    """

    def __init__(self, directory: str | os.PathLike | bool | None = None) -> None:
        if directory is None:
            directory = cache_root() / "knn"
        self.directory = None if directory is False else Path(directory)
        self._memory: dict[tuple, KnnGraph] = {}
        self.last_source = ""  # "memory", "disk" or "built" (for tests and logs)
        self.last_seconds = 0.0

    def path_for(self, model_name: str, vocab: Tensor, k: int, fingerprint: str) -> Path | None:
        if self.directory is None:
            return None
        v, d = (int(s) for s in vocab.shape)
        return self.directory / f"{_slug(model_name)}-v{v}-d{d}-k{k}-{fingerprint[:24]}.safetensors"

    def get(self, vocab: Float[Tensor, "vocab hidden"], k: int, model_name: str = "") -> KnnGraph:
        """The graph of ``vocab`` with ``k`` neighbours, from memory, disk, or built now."""
        start = time.perf_counter()
        k = min(k, int(vocab.shape[0]) - 1)
        ident = (vocab.data_ptr(), vocab._version, tuple(vocab.shape), str(vocab.device), k)
        graph = self._memory.get(ident)
        if graph is not None:
            self.last_source = "memory"
        else:
            graph, self.last_source = self._load_or_build(vocab, k, model_name)
            # at most two matrices per instance (an encoder-decoder model's two sides): drop older ones
            self._memory = {**dict(list(self._memory.items())[-1:]), ident: graph}
        self.last_seconds = time.perf_counter() - start
        return graph

    def _load_or_build(self, vocab: Tensor, k: int, model_name: str) -> tuple[KnnGraph, str]:
        fingerprint = embedding_fingerprint(vocab)
        path = self.path_for(model_name, vocab, k, fingerprint)
        if path is not None and path.is_file():
            try:
                tensors = load_file(str(path))
                graph = KnnGraph(
                    tensors["indices"].long().to(vocab.device), tensors["distances"].to(vocab.device), fingerprint
                )
                if graph.indices.shape == (vocab.shape[0], k):
                    return graph, "disk"
            except (OSError, KeyError, RuntimeError, ValueError):
                pass  # unreadable cache file: rebuild and overwrite it
        graph = build_knn_graph(vocab, k)
        graph = KnnGraph(graph.indices, graph.distances, fingerprint)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, tmp = tempfile.mkstemp(prefix=".knn-", suffix=".safetensors", dir=path.parent)
            os.close(handle)
            try:
                save_file(
                    {
                        "indices": graph.indices.to("cpu", torch.int32).contiguous(),
                        "distances": graph.distances.cpu().contiguous(),
                    },
                    tmp,
                    metadata={"model": model_name, "fingerprint": fingerprint, "k": str(k)},
                )
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        return graph, "built"
