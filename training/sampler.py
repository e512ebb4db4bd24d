"""Identity-balanced P×K batches, seeded per epoch, split between data-parallel ranks.

A batch holds ``p`` identities (classes) × ``k`` images of each. In bigcat-reid an
identity is a flank, (individual, side): the two flanks of one animal carry different
patterns, so they are different classes (see :func:`training.data.flank_labels`).

Sampling rule, per epoch:

- the identities are visited in a fresh random order, ``p`` at a time, so every identity
  appears about equally often (a new permutation starts when one runs out; a batch never
  holds an identity twice);
- an identity with at least ``k`` images gives ``k`` distinct images, drawn at random;
  one with fewer than ``k`` gives all its images once and fills up with images drawn
  *with replacement* from its own (augmentation makes the repeats differ).

Randomness comes only from ``np.random.default_rng([seed, epoch])``: the same seed and
epoch give the same batches on every machine, whatever the global RNG state. With
``world_size`` ranks, ``batches_per_epoch × world_size`` batches are drawn and rank ``r``
takes every ``world_size``-th one starting at ``r``: each rank gets its own disjoint
share and all ranks run the same number of steps.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

__all__ = ["MixedPKBatchSampler", "PKBatchSampler"]


class _EpochBatches:
    """What the batch samplers share: ``batches_per_epoch`` batches per rank, an epoch
    set before iterating, rank ``r`` taking ``all_batches(epoch)[r::world_size]``."""

    batches_per_epoch: int
    epoch: int
    rank: int
    world_size: int

    def all_batches(self, epoch: int) -> list[list[int]]:
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.all_batches(self.epoch)[self.rank :: self.world_size]


class PKBatchSampler(_EpochBatches):
    """A batch sampler (for ``DataLoader(batch_sampler=...)``) of P×K index lists.

    ``labels[i]`` is the class of dataset item ``i``. ``batches_per_epoch`` is per rank;
    by default ``len(labels) // (p × k × world_size)``, at least 1. Call
    :meth:`set_epoch` before iterating each epoch.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        p: int,
        k: int,
        *,
        seed: int,
        batches_per_epoch: int | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.size == 0:
            raise ValueError("labels must be a non-empty 1-D sequence")
        if p < 1 or k < 1:
            raise ValueError(f"p and k must be >= 1, got p={p}, k={k}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not within world size {world_size}")
        self.classes, inverse = np.unique(labels, return_inverse=True)
        if len(self.classes) < p:
            raise ValueError(
                f"a batch needs p={p} identities but the training data has only "
                f"{len(self.classes)}: lower sampler.identities"
            )
        order = np.argsort(inverse, kind="stable")
        bounds = np.cumsum(np.bincount(inverse, minlength=len(self.classes)))[:-1]
        self.members: list[np.ndarray] = np.split(order, bounds)
        self.p, self.k = int(p), int(k)
        self.seed = int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        if batches_per_epoch is None:
            batches_per_epoch = max(1, len(labels) // (self.p * self.k * self.world_size))
        self.batches_per_epoch = int(batches_per_epoch)
        self.epoch = 0

    def all_batches(self, epoch: int) -> list[list[int]]:
        """Every rank's batches of ``epoch``, in order (rank r takes ``[r::world_size]``)."""
        rng = np.random.default_rng([self.seed, int(epoch)])
        n_classes = len(self.classes)
        queue: list[int] = []
        batches = []
        for _ in range(self.batches_per_epoch * self.world_size):
            chosen: list[int] = []
            while len(chosen) < self.p:
                if not queue:
                    queue = rng.permutation(n_classes).tolist()
                c = queue.pop()
                if c in chosen:  # only at a permutation boundary: keep it for later
                    queue.insert(0, c)
                    continue
                chosen.append(c)
            batch: list[int] = []
            for c in chosen:
                members = self.members[c]
                if len(members) >= self.k:
                    picked = rng.choice(members, size=self.k, replace=False)
                else:
                    extra = rng.choice(members, size=self.k - len(members), replace=True)
                    picked = np.concatenate([rng.permutation(members), extra])
                batch += [int(i) for i in picked]
            batches.append(batch)
        return batches



class MixedPKBatchSampler(_EpochBatches):
    """P×K batches drawn from several parts of a dataset at once: each batch has
    ``p`` identities of each part (``parts``: (item indices, p) pairs), K images each,
    every part sampled as :class:`PKBatchSampler` does (its own seeded stream). Used for
    rehearsal: a real catalogue's flanks beside synthetic ones in every batch."""

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        parts: Sequence[tuple[Sequence[int] | np.ndarray, int]],
        k: int,
        *,
        seed: int,
        batches_per_epoch: int | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        labels = np.asarray(labels)
        if not parts:
            raise ValueError("no part to sample from")
        self.items = [np.asarray(ix, dtype=np.int64) for ix, _ in parts]
        if batches_per_epoch is None:
            first, p0 = self.items[0], int(parts[0][1])
            batches_per_epoch = max(1, len(first) // (p0 * k * world_size))
        self.samplers = [
            PKBatchSampler(labels[ix], p, k, seed=seed * 1000 + j,
                           batches_per_epoch=batches_per_epoch, rank=rank,
                           world_size=world_size)  # fmt: skip
            for j, (ix, (_, p)) in enumerate(zip(self.items, parts, strict=True))
        ]
        self.batches_per_epoch = int(batches_per_epoch)
        self.rank, self.world_size = int(rank), int(world_size)
        self.epoch = 0

    def all_batches(self, epoch: int) -> list[list[int]]:
        per_part = [s.all_batches(epoch) for s in self.samplers]
        return [
            [int(ix[i]) for ix, b in zip(self.items, batches, strict=True) for i in b]
            for batches in zip(*per_part, strict=True)
        ]
