"""Token samplers: replacement tokens for perturbation methods (ReAGent).

A sampler follows a one-method protocol, ``sample(ids, mask, generator) -> ids``: it returns
``ids`` with the positions where ``mask`` is True replaced. Built-in samplers are chosen by name
(``uniform``, ``model``, ``mlm``, ``pos``); any object with a ``sample`` method works too.
Methods never tokenize, so the attributed tokenizer's vocabulary comes in as a
:class:`Vocabulary`, filled in by the model wrapper.

Example:
    >>> vocab = Vocabulary(size=6, special_ids=(0, 1))
    >>> ids = torch.tensor([[2, 3, 4]])
    >>> out = UniformSampler(vocab).sample(ids, torch.tensor([[False, True, False]]), torch.Generator().manual_seed(0))
    >>> out[0, 0].item(), out[0, 2].item(), out[0, 1].item() in (2, 3, 4, 5)
    (2, 4, True)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from genattrib.engine.forward import ModelForward
from genattrib.errors import InvalidArgumentError, MissingDependencyError, UnknownNameError
from genattrib.methods.mlm_sampler import MLMSampler
from genattrib.methods.vocabulary import Vocabulary

SAMPLER_NAMES = ("uniform", "model", "mlm", "pos")


@runtime_checkable
class TokenSampler(Protocol):
    """Replace ``ids`` where ``mask`` is True (``generator`` is a CPU generator)."""

    def sample(
        self, ids: Int[Tensor, "row position"], mask: Bool[Tensor, "row position"], generator: torch.Generator
    ) -> Int[Tensor, "row position"]: ...


class UniformSampler:
    """Any non-special token of the vocabulary, uniformly."""

    def __init__(self, vocabulary: Vocabulary) -> None:
        self.allowed = vocabulary.allowed_ids()

    def sample(
        self, ids: Int[Tensor, "row position"], mask: Bool[Tensor, "row position"], generator: torch.Generator
    ) -> Int[Tensor, "row position"]:
        draw = torch.randint(len(self.allowed), tuple(ids.shape), generator=generator)
        return torch.where(mask.cpu(), self.allowed[draw], ids.cpu())


class ModelSampler:
    """The attributed model's own top prediction at each position given the real prefix
    (excluding the original token and special tokens); position 0, which has no prefix, gets a
    uniform token. Predictions for all rows of a batch come from one batched forward
    (:meth:`prepare`)."""

    def __init__(self, forward: ModelForward, vocabulary: Vocabulary) -> None:
        self.forward = forward
        self.uniform = UniformSampler(vocabulary)
        self.banned = torch.tensor([i for i in vocabulary.special_ids if i < forward.vocab_size], dtype=torch.long)
        self.cache: dict[bytes, Tensor] = {}

    def prepare(self, rows: list[Int[Tensor, " _position"]]) -> None:
        """Compute (batched) the predictions of every row not cached yet."""
        todo = [r.cpu() for r in rows if r.cpu().numpy().tobytes() not in self.cache]
        if not todo:
            return
        length = max(int(r.shape[0]) for r in todo)

        def run(chunk: slice) -> None:
            block = todo[chunk]
            ids = torch.zeros(len(block), length, dtype=torch.long)
            for i, r in enumerate(block):
                ids[i, : r.shape[0]] = r
            positions = torch.arange(length).expand(len(block), -1)
            logits = self.forward.logits_at(self.forward.embed(ids), positions).float().cpu()
            logits[..., self.banned] = -torch.inf
            logits.scatter_(-1, ids.unsqueeze(-1), -torch.inf)  # never the original token
            best = logits.argmax(-1)
            for i, r in enumerate(block):
                self.cache[r.numpy().tobytes()] = best[i, : r.shape[0]]

        self.forward.run_chunked(len(todo), length, run, grad=False, n_logits=length)

    def sample(
        self, ids: Int[Tensor, "row position"], mask: Bool[Tensor, "row position"], generator: torch.Generator
    ) -> Int[Tensor, "row position"]:
        ids = ids.cpu()
        self.prepare(list(ids))
        predicted = torch.stack([self.cache[r.numpy().tobytes()] for r in ids])
        fallback = self.uniform.sample(ids, torch.ones_like(mask, device="cpu"), generator)
        predicted[:, 0] = fallback[:, 0]
        return torch.where(mask.cpu(), predicted, ids)


class PosSampler:
    """A token with the same part-of-speech tag, as the ReAGent reference does it: every
    vocabulary entry is decoded alone, stripped, and tagged alone (a one-word sentence), and
    tokens are grouped by their full Penn Treebank tag (``NN``, ``NNS``, ``VBD`` ...). Special
    tokens are never drawn. ``tagger`` maps a list of words to one tag per word, each word tagged
    on its own; the default is NLTK's perceptron tagger (optional package ``nltk`` and its
    ``averaged_perceptron_tagger_eng`` data). The tags are computed once per sampler.

    Example:
        >>> vocab = Vocabulary(size=4, tokens=("Ġcat", "Ġdog", "Ġran", "Ġsat"))
        >>> tags = lambda words: ["NN" if w in ("cat", "dog") else "VBD" for w in words]
        >>> sampler = PosSampler(vocab, tagger=tags)
        >>> out = sampler.sample(torch.tensor([[0, 2]]), torch.tensor([[True, True]]), torch.Generator().manual_seed(0))
        >>> out[0, 0].item() in (0, 1), out[0, 1].item() in (2, 3)
        (True, True)
    """

    def __init__(self, vocabulary: Vocabulary, tagger: Callable[[list[str]], list[str]] | None = None) -> None:
        words = [w.strip() for w in vocabulary.words()]
        tags = list((tagger or nltk_tagger())(words))
        if len(tags) != len(words):
            raise InvalidArgumentError(
                "tagger", f"returned {len(tags)} tags for {len(words)} words", "return one tag per word, in order"
            )
        special = set(vocabulary.special_ids)
        groups: dict[str, list[int]] = {}
        for i, tag in enumerate(tags):
            if i not in special:
                groups.setdefault(str(tag), []).append(i)
        names = sorted(groups)
        index = {n: g for g, n in enumerate(names)}
        self.tags = tuple(str(t) for t in tags)
        self.group_of = torch.tensor([index[str(t)] if i not in special else -1 for i, t in enumerate(tags)])
        self.members = [torch.tensor(groups[n]) for n in names]
        self.uniform = UniformSampler(vocabulary)

    def sample(
        self, ids: Int[Tensor, "row position"], mask: Bool[Tensor, "row position"], generator: torch.Generator
    ) -> Int[Tensor, "row position"]:
        ids, mask = ids.cpu(), mask.cpu()
        out = self.uniform.sample(ids, mask, generator)
        draw = torch.rand(tuple(ids.shape), generator=generator)
        for index in mask.nonzero().tolist():
            group = int(self.group_of[min(int(ids[tuple(index)]), len(self.group_of) - 1)])
            if group >= 0:
                members = self.members[group]
                out[tuple(index)] = members[int(draw[tuple(index)] * len(members))]
        return out


def nltk_tagger() -> Callable[[list[str]], list[str]]:
    """NLTK's perceptron tagger applied to each word alone (``pos_tag([word])`` per word, batched)."""
    try:
        import nltk
    except ImportError as error:
        raise MissingDependencyError(
            "the 'pos' token sampler needs the optional package 'nltk' (pip install nltk; then "
            "nltk.download('averaged_perceptron_tagger_eng')); or use token_sampler='uniform'"
        ) from error

    def tag(words: list[str]) -> list[str]:
        try:
            return [sentence[0][1] for sentence in nltk.pos_tag_sents([[w] for w in words])]
        except LookupError as error:
            raise MissingDependencyError(f"the 'pos' token sampler needs NLTK's tagger data: {error}") from error

    return tag


def resolve_sampler(spec: Any, vocabulary: Vocabulary, forward: ModelForward | None, mlm: Any = None) -> TokenSampler:
    """A sampler from a name or an object with ``sample``; ``None`` means ``mlm`` when an MLM is
    given, else ``uniform``."""
    if spec is None:
        spec = "uniform" if mlm is None else "mlm"
    if not isinstance(spec, str):
        if not isinstance(spec, TokenSampler):
            raise InvalidArgumentError(
                "token_sampler",
                f"{type(spec).__name__} has no sample(ids, mask, generator) method",
                f"pass one of {', '.join(SAMPLER_NAMES)} or an object with that method",
            )
        return spec
    if spec == "uniform":
        return UniformSampler(vocabulary)
    if spec == "model":
        if forward is None:
            raise InvalidArgumentError(
                "token_sampler", "the 'model' sampler needs the attributed model", "use it through attribute()"
            )
        return ModelSampler(forward, vocabulary)
    if spec == "mlm":
        if mlm is None:
            raise InvalidArgumentError(
                "mlm", "token_sampler='mlm' needs a masked LM", "pass mlm=<path> or mlm=(model, tokenizer)"
            )
        return MLMSampler.from_spec(mlm, vocabulary)
    if spec == "pos":
        return PosSampler(vocabulary)
    raise UnknownNameError("token_sampler", spec, SAMPLER_NAMES)
