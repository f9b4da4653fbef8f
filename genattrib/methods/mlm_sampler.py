"""Replacement tokens proposed by a masked LM (ReAGent's paper: RoBERTa fills the replaced slots).

The replaced positions are set to the MLM's mask token and the MLM's distribution at each of
them is sampled (seeded). The MLM may use another vocabulary: ids are mapped by token string,
exactly first, then ignoring a leading space marker (``Ġ`` / ``▁``); attributed tokens with no
counterpart become the MLM's unknown token, and MLM tokens with no counterpart (or special) are
never proposed. Best effort: BPE and WordPiece pieces do not always correspond.

Example:
    >>> sampler = MLMSampler.from_spec("distilroberta-base", vocabulary)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from genattrib.devices import execution_device
from genattrib.errors import InvalidArgumentError
from genattrib.methods.vocabulary import Vocabulary


def _plain(token: str) -> str:
    return token[1:] if token[:1] in ("Ġ", "▁") else token


class MLMSampler:
    """Sample replacements from ``model`` (a Hugging Face masked LM) with ``tokenizer``."""

    def __init__(self, model: Any, tokenizer: Any, vocabulary: Vocabulary) -> None:
        if getattr(tokenizer, "mask_token_id", None) is None:
            raise InvalidArgumentError(
                "mlm", "the masked LM's tokenizer has no mask token", "pass a masked LM (BERT, RoBERTa ...)"
            )
        if not vocabulary.tokens:
            raise InvalidArgumentError(
                "mlm",
                "the attributed vocabulary's tokens are unknown",
                "use the sampler through AttributionModel.attribute",
            )
        self.model = model.eval()
        self.device = execution_device(model)
        self.mask_id = int(tokenizer.mask_token_id)
        self.prefix = [i for i in (tokenizer.cls_token_id,) if i is not None]
        self.suffix = [i for i in (tokenizer.sep_token_id,) if i is not None]
        mlm_vocab: dict[str, int] = tokenizer.get_vocab()
        plain: dict[str, int] = {}
        for token, index in sorted(mlm_vocab.items(), key=lambda kv: kv[1]):
            plain.setdefault(_plain(token), index)
        unk = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else self.mask_id
        special_attr = set(vocabulary.special_ids)
        size = max(len(tokenizer), max(mlm_vocab.values()) + 1)
        self.to_mlm = torch.full((vocabulary.size,), int(unk), dtype=torch.long)
        self.from_mlm = torch.full((size,), -1, dtype=torch.long)
        for i, token in enumerate(vocabulary.tokens):
            j = mlm_vocab.get(token, plain.get(_plain(token)))
            if j is None:
                continue
            self.to_mlm[i] = j
            if i not in special_attr and self.from_mlm[j] < 0:
                self.from_mlm[j] = i
        mlm_special = [i for i in (getattr(tokenizer, "all_special_ids", None) or []) if i < size]
        self.from_mlm[mlm_special] = -1
        if int((self.from_mlm >= 0).sum()) == 0:
            raise InvalidArgumentError(
                "mlm",
                "no token of the masked LM's vocabulary matches the attributed model's",
                "use an MLM with a compatible vocabulary, or token_sampler='uniform'",
            )

    @classmethod
    def from_spec(cls, spec: Any, vocabulary: Vocabulary) -> MLMSampler:
        """From ``(model, tokenizer)`` or a path / hub name loaded with ``AutoModelForMaskedLM``."""
        if isinstance(spec, (tuple, list)) and len(spec) == 2:
            return cls(spec[0], spec[1], vocabulary)
        if isinstance(spec, str):
            from transformers import AutoModelForMaskedLM, AutoTokenizer

            return cls(AutoModelForMaskedLM.from_pretrained(spec), AutoTokenizer.from_pretrained(spec), vocabulary)
        raise InvalidArgumentError(
            "mlm", f"cannot use {type(spec).__name__} as a masked LM", "pass a path or (model, tokenizer)"
        )

    def sample(
        self, ids: Int[Tensor, "row position"], mask: Bool[Tensor, "row position"], generator: torch.Generator
    ) -> Int[Tensor, "row position"]:
        ids, mask = ids.cpu(), mask.cpu()
        out = ids.clone()
        if not bool(mask.any()):
            return out
        mlm_ids = torch.where(mask, self.mask_id, self.to_mlm[ids])
        rows = mlm_ids.shape[0]
        full = torch.cat(
            [
                torch.tensor(self.prefix, dtype=torch.long).expand(rows, -1),
                mlm_ids,
                torch.tensor(self.suffix, dtype=torch.long).expand(rows, -1),
            ],
            dim=1,
        )
        with torch.no_grad():
            logits = self.model(input_ids=full.to(self.device)).logits.float().cpu()
        logits = logits[:, len(self.prefix) : len(self.prefix) + ids.shape[1]][mask]
        vocab = min(logits.shape[-1], self.from_mlm.shape[0])
        logits = logits[:, :vocab].masked_fill(self.from_mlm[:vocab] < 0, -torch.inf)
        picked = torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)
        out[mask] = self.from_mlm[picked]
        return out
