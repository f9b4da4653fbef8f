"""The result of ``model.attribute``: attributed sequences plus provenance.

Example:
    >>> out = model.attribute("The capital of France is", target=" Paris.")
    >>> out.sequences[0].generated_text
    ' Paris.'
    >>> out.save("paris.json")
    PosixPath('paris.json')
    >>> FeatureAttributionOutput.load("paris.json").equals(out)
    True
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from genattrib.errors import InvalidArgumentError
from genattrib.output import dataset_files, serialization, stream
from genattrib.output.provenance import Provenance
from genattrib.output.rows import SequenceRows
from genattrib.output.scores import SparseScores
from genattrib.output.sequence import SequenceAttribution
from genattrib.output.stitch import stitch as stitch_sequences


@dataclass
class FeatureAttributionOutput:
    """Attributions for one or more sequences, with where they came from."""

    sequences: list[SequenceAttribution]
    provenance: Provenance = field(default_factory=Provenance)

    # --- container protocol ----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.sequences)

    def __iter__(self) -> Iterator[SequenceAttribution]:
        return iter(self.sequences)

    def __getitem__(self, index: int | slice) -> FeatureAttributionOutput:
        """``out[0]`` or ``out[1:3]``: a result holding only those sequences."""
        if isinstance(index, int):
            if not -len(self) <= index < len(self):
                raise IndexError(f"sequence index {index} out of range for {len(self)} sequences")
            picked = [self.sequences[index]]
        elif isinstance(index, slice):
            picked = self.sequences[index]
        else:
            raise InvalidArgumentError("index", f"cannot index with {type(index).__name__}", "use an int or a slice")
        return FeatureAttributionOutput(list(picked), copy.deepcopy(self.provenance))

    def steps(self, start: int | None = None, stop: int | None = None) -> FeatureAttributionOutput:
        """Keep only explained generated steps ``start:stop`` of every sequence."""
        return FeatureAttributionOutput([s.steps(start, stop) for s in self.sequences], copy.deepcopy(self.provenance))

    # --- combining -----------------------------------------------------------------------
    @classmethod
    def merge(cls, outputs: Sequence[FeatureAttributionOutput], *, stitch: bool = True) -> FeatureAttributionOutput:
        """The sequences of results made by the same model, method and target, one after another;
        windows of one sequence (``attr_pos_start``/``attr_pos_end`` calls whose rows do not
        overlap) stitched into one sequence, as one call over their union gives it (see
        :mod:`genattrib.output.stitch`; ``stitch=False`` keeps every sequence as it is).

        Example:
            >>> windows = [model.attribute(prompt, target=" Paris.", attr_pos_start=a, attr_pos_end=b) for a in (0, 2)
            ...            for b in [a + 2]]
            >>> [w.sequences[0].num_steps for w in windows], len(FeatureAttributionOutput.merge(windows))
            ([2, 1], 1)
        """
        if not outputs:
            raise InvalidArgumentError("outputs", "nothing to merge", "pass at least one result")
        first = outputs[0].provenance
        for other in outputs[1:]:
            p = other.provenance
            for name in ("model_name", "method", "attributed_fn"):
                if getattr(p, name) != getattr(first, name):
                    raise InvalidArgumentError(
                        "outputs",
                        f"results differ in {name} ({getattr(first, name)!r} vs {getattr(p, name)!r})",
                        "merge only results of the same model, method and attributed function",
                    )
        merged = copy.deepcopy(first)
        merged.timings = {}
        for out in outputs:
            for phase, seconds in out.provenance.timings.items():
                merged.timings[phase] = merged.timings.get(phase, 0.0) + seconds
        merged.work = {}
        for out in outputs:
            for name, count in out.provenance.work.items():
                # a largest chunk is a maximum, the rest are counts
                combine = max if name.startswith("max_") else (lambda a, b: a + b)
                merged.work[name] = combine(merged.work.get(name, 0), count)
        merged.step_score_rules = {}  # the union: each result may hold other step scores
        for out in outputs:
            for name, rule in out.provenance.step_score_rules.items():
                if merged.step_score_rules.setdefault(name, rule) != rule:
                    raise InvalidArgumentError(
                        "outputs",
                        f"results merge step score {name!r} differently "
                        f"({merged.step_score_rules[name]!r} vs {rule!r})",
                        "merge only results whose step scores of the same name have the same merge rule",
                    )
        members = [(seq, out.provenance) for out in outputs for seq in out.sequences]
        return cls(stitch_sequences(members) if stitch else [seq for seq, _ in members], merged)

    def equals(self, other: FeatureAttributionOutput) -> bool:
        """Exact equality of every score, token and provenance field."""
        return (
            len(self) == len(other)
            and self.provenance == other.provenance
            and all(a.equals(b) for a, b in zip(self.sequences, other.sequences))
        )

    # --- display -------------------------------------------------------------------------
    def show(self, **kwargs: Any) -> None:
        """Print a heatmap of every sequence in the terminal (see :mod:`genattrib.render`)."""
        from genattrib.render.console import show

        show(self, **kwargs)

    # --- aggregation (implemented in genattrib.aggregation) ---------------------------------
    def aggregate(self, *steps: Any, **kwargs: Any) -> FeatureAttributionOutput:
        """A new result aggregated by ``steps`` (names like ``"words"``, ``"sentences"`` or
        aggregator objects), applied in order; this result is left unchanged.

        Example:
            >>> out.aggregate("words", "sentences").sequences[0].tokens
            ['The capital of France is', ' Paris.']
        """
        from genattrib.aggregation.pipeline import aggregate

        return aggregate(self, *steps, **kwargs)

    def __sub__(self, other: FeatureAttributionOutput) -> FeatureAttributionOutput:
        """Contrast two attributions of the same sequences: ``out_a - out_b``."""
        from genattrib.aggregation.contrast import difference

        return difference(self, other)

    # --- HTML (implemented in genattrib.render.html) ----------------------------------------
    def to_html(self, **kwargs: Any) -> str:
        """One self-contained HTML page (inline CSS/JS, no network) showing this result."""
        from genattrib.render.html import to_html

        return to_html(self, **kwargs)

    def save_html(self, path: str | Path, **kwargs: Any) -> Path:
        """Write :meth:`to_html` to ``path``."""
        from genattrib.render.html import save_html

        return save_html(self, path, **kwargs)

    def _repr_html_(self) -> str:  # notebooks
        from genattrib.render.html import to_html

        return to_html(self, embedded=True)

    # --- persistence ---------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Save to ``.json`` or ``.safetensors`` (no pickle); reload with :meth:`load`.

        Top-k results (``attribute(..., top_k_scores=k)``) are saved sparse (kept cells and residuals);
        a streamed result is read from its shards and saved whole.
        """
        meta, tensors = self.encode()
        return serialization.write(path, meta, tensors)

    def encode(self, scores: bool = True) -> tuple[dict[str, Any], dict[str, Tensor]]:
        """(JSON metadata, tensors) that :meth:`save` writes; ``scores=False`` leaves out the score
        rows (scores and granular scores), which a stream folder keeps in its shards."""
        meta: dict[str, Any] = {"provenance": self.provenance.to_dict(), "sequences": []}
        tensors = {}
        for i, seq in enumerate(self.sequences):
            sparse = seq.sparse_scores
            entry = {
                "tokens": seq.tokens,
                "prompt_length": seq.prompt_length,
                "step_start": seq.step_start,
                "generated_text": seq.generated_text,
                "step_scores": sorted(seq.step_scores),
                "granular": seq.granular_scores_shape is not None,
                "token_roles": seq.token_roles,
                "target_spans": seq.target_spans,
                "source_spans": seq.source_spans,
            }
            if sparse is not None:
                entry["sparse"] = {"k": sparse.k, "positions": sparse.num_positions}
            meta["sequences"].append(entry)
            tensors[f"{i}.input_ids"] = seq.input_ids
            tensors[f"{i}.special_mask"] = seq.held_fixed  # the file format keeps its key
            tensors[f"{i}.special_tokens_mask"] = seq.special_tokens_mask
            if scores:
                if sparse is not None:
                    tensors.update(sparse.to_tensors(f"{i}.sparse."))
                else:
                    tensors[f"{i}.scores"] = seq.scores
                if seq.granular_scores is not None:
                    tensors[f"{i}.granular_scores"] = seq.granular_scores
            for name, values in seq.step_scores.items():
                tensors[f"{i}.step.{name}"] = values
        return meta, tensors

    @classmethod
    def load(cls, path: str | Path) -> FeatureAttributionOutput:
        """Load a result saved with :meth:`save`, or the folder of ``attribute(..., stream_to=folder)``.

        A folder is opened lazily: each sequence's rows are read from the shards when its
        ``scores`` (or one row, :meth:`SequenceAttribution.score_row`) are asked for. The
        ``out_dir`` of ``genattrib.attribute_dataset`` loads whole, every process's shards merged,
        one sequence per finished record in input order (``provenance.storage["dataset"]`` lists
        their ids).
        """
        if dataset_files.is_dataset_folder(path):
            return cls._load_dataset(path)
        if Path(path).is_dir():
            meta, tensors, stored = stream.read_stream(path)
            return cls.decode(meta, tensors, stored)
        meta, tensors = serialization.read(path)
        try:
            return cls.decode(meta, tensors)
        except (KeyError, ValueError, IndexError, TypeError, AttributeError, RecursionError) as error:
            raise InvalidArgumentError(
                "path",
                f"{str(path)!r} is a genattrib file, but its content is damaged ({type(error).__name__}: {error})",
                "save the result again from its source, or re-run the attribution",
            ) from error

    @classmethod
    def _load_dataset(cls, path: str | Path) -> FeatureAttributionOutput:
        """The records of a dataset folder (see :mod:`genattrib.output.dataset_files`), in input order."""
        manifest, shards = dataset_files.read_dataset(path)
        if not shards:
            return cls([], Provenance.from_dict(manifest.get("provenance") or {}))
        merged = cls.merge([cls.decode(meta, tensors) for meta, tensors in shards], stitch=False)  # one per record
        positions = [p for meta, _ in shards for p in meta["dataset"]["positions"]]
        order = sorted(range(len(positions)), key=positions.__getitem__)
        ids = manifest["record_ids"]
        merged.sequences = [merged.sequences[i] for i in order]
        merged.provenance.storage = {
            **merged.provenance.storage,
            "dataset": {
                "folder": str(path),
                "record_ids": [ids[positions[i]] for i in order],
                "failed": len(manifest.get("failures", [])),
            },
        }
        return merged

    @classmethod
    def decode(
        cls, meta: dict[str, Any], tensors: dict[str, Tensor], stored: Sequence[SequenceRows] | None = None
    ) -> FeatureAttributionOutput:
        """The result :meth:`encode` describes; ``stored`` gives each sequence's (scores, granular
        scores, step scores of the rows) when ``meta`` and ``tensors`` leave them out."""
        sequences = []
        for i, entry in enumerate(meta["sequences"]):
            steps = {n: tensors[f"{i}.step.{n}"] for n in entry["step_scores"] if f"{i}.step.{n}" in tensors}
            sparse = entry.get("sparse")
            if stored is not None:
                scores, granular, row_steps = stored[i]
                steps = {**row_steps, **steps}
            elif sparse is not None:
                scores = SparseScores.from_tensors(f"{i}.sparse.", tensors, int(sparse["positions"]), int(sparse["k"]))
                granular = tensors.get(f"{i}.granular_scores") if entry["granular"] else None
            else:
                scores = tensors[f"{i}.scores"]
                granular = tensors.get(f"{i}.granular_scores") if entry["granular"] else None
            sequences.append(
                SequenceAttribution(
                    input_ids=tensors[f"{i}.input_ids"],
                    tokens=list(entry["tokens"]),
                    prompt_length=int(entry["prompt_length"]),
                    scores=scores,
                    step_scores={n: steps[n] for n in entry["step_scores"]},
                    held_fixed=tensors[f"{i}.special_mask"],
                    special_tokens_mask=tensors.get(f"{i}.special_tokens_mask"),  # absent from older files
                    granular_scores=granular,
                    step_start=int(entry["step_start"]),
                    generated_text=entry["generated_text"],
                    token_roles=entry.get("token_roles"),
                    target_spans=_spans(entry.get("target_spans")),
                    source_spans=_spans(entry.get("source_spans")),
                )
            )
        return cls(sequences, Provenance.from_dict(meta["provenance"]))


def _spans(value: list[list[int]] | None) -> list[tuple[int, int]] | None:
    """Spans read back from JSON (lists) as the tuples they were saved from."""
    return None if value is None else [(int(a), int(b)) for a, b in value]
