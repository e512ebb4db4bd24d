"""New individuals of the season: encounters that matched nobody, clustered among themselves.

Each unmatched encounter is compared with its nearest unmatched neighbours by
embedding (cosine, same species, compatible flank side: a left flank never joins a
right one), and each such pair is scored with a calibrated probability that both show
the same flank (the matcher's fused global + local score). Clusters grow by average
linkage: the two clusters with the most probable link merge while the mean probability
over their pairs stays at or above ``threshold`` (``reid bulk`` uses 0.2: the pair
probability is calibrated on gallery candidates, where same-flank pairs are rarer than
among unmatched neighbours). Small clusters score every cross pair; large ones the pairs
already scored. Every cluster, singletons included, is one proposed new individual for a
reviewer to confirm.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

#: Largest number of cross pairs scored when two clusters are compared.
FULL_LINKAGE_PAIRS = 64


@dataclass(frozen=True)
class Item:
    """An unmatched encounter: its id, species, side and mean embedding (unit vector)."""

    id: str
    species: str
    side: str
    embedding: np.ndarray


@dataclass(frozen=True)
class Proposal:
    """A proposed new individual: its encounters, best first, and how sure the grouping is
    (mean pair probability inside the cluster; None for a single encounter)."""

    id: str
    species: str
    side: str
    encounters: tuple[str, ...]
    probability: float | None


def _compatible(a: Item, b: Item) -> bool:
    return a.species == b.species and (a.side == b.side or "unknown" in (a.side, b.side))


def candidate_pairs(items: Sequence[Item], neighbours: int) -> list[tuple[int, int]]:
    """Pairs (i < j) where j is among i's ``neighbours`` most similar compatible items or
    the other way round, in a fixed order."""
    if len(items) < 2 or neighbours < 1:
        return []
    emb = np.stack([it.embedding for it in items]).astype(np.float32)
    sims = emb @ emb.T
    pairs: set[tuple[int, int]] = set()
    for i, a in enumerate(items):
        order = np.argsort(-sims[i], kind="stable")
        taken = 0
        for j in order:
            j = int(j)
            if j == i or not _compatible(a, items[j]):
                continue
            pairs.add((min(i, j), max(i, j)))
            taken += 1
            if taken >= neighbours:
                break
    return sorted(pairs)


def cluster(
    items: Sequence[Item],
    probability: Callable[[int, int], float],
    *,
    threshold: float = 0.5,
    neighbours: int = 5,
) -> list[list[int]]:
    """Clusters of item indices (each sorted; clusters in order of their first index).

    ``probability(i, j)`` is the calibrated P(items i and j are the same flank); it is
    called once per pair at most.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold {threshold} is not in (0, 1]")
    cache: dict[tuple[int, int], float] = {}

    def p(i: int, j: int) -> float:
        key = (min(i, j), max(i, j))
        if key not in cache:
            cache[key] = float(probability(*key))
        return cache[key]

    members: dict[int, list[int]] = {i: [i] for i in range(len(items))}
    owner = list(range(len(items)))
    heap = [(-p(i, j), i, j) for i, j in candidate_pairs(items, neighbours)]
    heapq.heapify(heap)
    while heap:
        neg, i, j = heapq.heappop(heap)
        a, b = owner[i], owner[j]
        if a == b or -neg < threshold:
            continue
        link = _linkage(members[a], members[b], items, p, cache)
        if link < threshold:
            continue
        merged = sorted(members[a] + members[b])
        keep, gone = min(a, b), max(a, b)
        members[keep] = merged
        del members[gone]
        for m in merged:
            owner[m] = keep
    return sorted(members.values(), key=lambda m: m[0])


def _linkage(a: list[int], b: list[int], items, p, cache) -> float:
    """Mean probability over the pairs of clusters ``a`` x ``b``: all of them when few,
    else those already scored. Incompatible pairs (other side) forbid the merge."""
    if any(not _compatible(items[i], items[j]) for i in a for j in b):
        return 0.0
    if len(a) * len(b) <= FULL_LINKAGE_PAIRS:
        return float(np.mean([p(i, j) for i in a for j in b]))
    known = [cache[(min(i, j), max(i, j))] for i in a for j in b if (min(i, j), max(i, j)) in cache]
    return float(np.mean(known)) if known else 0.0


def proposals(
    items: Sequence[Item],
    clusters: list[list[int]],
    order: Callable[[Item], object],
    pair_probability: Callable[[int, int], float],
    prefix: str = "NEW",
) -> list[Proposal]:
    """Name clusters ``<prefix>-<species initial>-001``... in ``order`` of their first
    encounter (e.g. by time), with the mean pair probability inside each."""
    ranked = sorted(clusters, key=lambda m: min(order(items[i]) for i in m))
    counters: dict[str, int] = {}
    out = []
    for m in ranked:
        first = items[m[0]]
        sides = {items[i].side for i in m} - {"unknown"}
        counters[first.species] = counters.get(first.species, 0) + 1
        inner = [pair_probability(i, j) for x, i in enumerate(m) for j in m[x + 1 :]]
        out.append(
            Proposal(
                id=f"{prefix}-{first.species[0].upper()}-{counters[first.species]:03d}",
                species=first.species,
                side=sides.pop() if len(sides) == 1 else "unknown",
                encounters=tuple(items[i].id for i in sorted(m, key=lambda i: order(items[i]))),
                probability=round(float(np.mean(inner)), 6) if inner else None,
            )
        )
    return out


def purity_recall(proposed: Sequence[Sequence[str]], truth: dict[str, str]) -> tuple[float, float]:
    """Purity (share of encounters in their cluster's majority identity) and recall (share
    of each true identity's encounters in its largest cluster), over the encounters that
    ``truth`` labels (encounter id -> true identity, e.g. individual and side)."""
    from collections import Counter

    labelled = [[e for e in c if e in truth] for c in proposed]
    total = sum(len(c) for c in labelled)
    if total == 0:
        return float("nan"), float("nan")
    pure = sum(Counter(truth[e] for e in c).most_common(1)[0][1] for c in labelled if c)
    best: dict[str, int] = {}
    for c in labelled:
        for ident, n in Counter(truth[e] for e in c).items():
            best[ident] = max(best.get(ident, 0), n)
    return pure / total, sum(best.values()) / total
