"""Which records go together, and which process runs them.

Records are sorted by length (prompt plus target tokens, longest first, so that a batch too big
for memory fails at once) and cut into batches of ``batch_size`` records; records with a forced
target and records to generate for never share a batch (``attribute()`` takes one or the other).
Inside a batch, ``attribute()`` packs the rows of every record and every step by length again,
so rows of similar length share a model call across records as well as across steps.

The batches are planned from the whole dataset, the same whatever the number of processes, and
then dealt out with torch's :class:`~torch.utils.data.DistributedSampler` (rank ``r`` of ``n``
runs batches ``r, r + n, r + 2n ...``, so every process gets long and short ones). So each batch,
and its scores, is the same in a one-process and an n-process run, and a resumed run skips the
batches already written, whichever process wrote them.

Example:
    >>> batch_records([(False, 5), (False, 9), (True, 7), (False, 6)], batch_size=2)
    [[2], [1, 3], [0]]
    >>> rank_share(5, rank=0, world=2), rank_share(5, rank=1, world=2)
    ([0, 2, 4], [1, 3])
"""

from __future__ import annotations

from collections.abc import Sequence

from torch.utils.data import DistributedSampler

from genattrib.validation import check_positive_int

__all__ = ["batch_records", "rank_share"]


def batch_records(keys: Sequence[tuple[bool, int] | None], batch_size: int) -> list[list[int]]:
    """Batches of record positions: ``keys[i]`` is (forced target?, length) of record ``i``, or
    None for a record left out (a bad one). Longest first; ties keep input order."""
    check_positive_int("batch_size", batch_size, "batch_size=8")
    batches: list[list[int]] = []
    for forced in (True, False):
        group = [i for i, key in enumerate(keys) if key is not None and key[0] is forced]
        group.sort(key=lambda i: (-keys[i][1], i))  # type: ignore[index]
        batches.extend(group[start : start + batch_size] for start in range(0, len(group), batch_size))
    return batches


def rank_share(num_batches: int, rank: int, world: int) -> list[int]:
    """The batches process ``rank`` of ``world`` runs (each batch runs in exactly one process)."""
    if num_batches == 0:
        return []
    sampler = DistributedSampler(range(num_batches), num_replicas=world, rank=rank, shuffle=False)
    # the sampler pads its index list with the first batches so every rank gets as many; a padded
    # slot (position >= num_batches in the interleaved list) repeats a batch another rank runs
    return [b for slot, b in zip(range(rank, num_batches * world + world, world), sampler) if slot < num_batches]
