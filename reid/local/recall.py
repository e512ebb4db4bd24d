"""A second shortlist drawn from the local descriptors themselves, for evaluating a
catalogue with learned local features (``reid eval --method fused --shortlist-local M``).

The verifier (LightGlue for ALIKED, a homography for the others) is too slow on a CPU to
run on every pair, so ``reid eval --shortlist N`` verifies each query's N nearest images
by the embedding only. Where the embedding is weak, as the tiger-trained model is on
nyala, a query's flank is often not among them: on nyala-dev's held-out flank-head crops
31 of 242 queries lose their answer that way at N = 40 (BENCHMARKS.md, "A second
shortlist from the descriptors").

Counting, for a pair of images, the descriptors that are each other's nearest neighbour
with cosine similarity >= ``similarity`` is cheap (one matrix product per pair, no
network) and does not depend on the embedding; each query's M images with the most such
mutual neighbours join its shortlist. With ALIKED's descriptors, similarity 0.7 and M =
10 lifted recall of the shortlist from 0.872 to 0.926 on that split (chosen there, so
optimistic).

Every pair of images is compared (N²/2 products of two keypoints × dimensions
matrices: about 12 ms a pair with 1,024 ALIKED keypoints on the 2-core CPU, shared),
so this belongs to evaluation and to small catalogues, not to the matcher's 300 ms
budget. It is label-blind: a query's near-duplicate frames (the next frames of one
walk) share the most descriptors with it and take some of its M places.

The matcher has the same option for such catalogues (``MatchConfig.local_shortlist``,
``reid enroll --shortlist-local M``): one query against every gallery image of its
partition (:func:`mutual_neighbour_counts_to`), so a match costs about 12 ms per gallery
image more.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from reid.verify import LocalFeatures

#: descriptor cosine a mutual nearest neighbour must reach to count (ALIKED, BENCHMARKS)
MUTUAL_SIMILARITY = 0.7


def mutual_neighbour_counts(
    feats: Sequence[LocalFeatures],
    similarity: float = MUTUAL_SIMILARITY,
    progress: Callable[[int], None] | None = None,
    chunk: int = 32,
    rows: int | None = None,
) -> np.ndarray:
    """N×N (symmetric, float32, diagonal 0): for each pair of images, how many of their
    descriptors are each other's nearest neighbour with cosine >= ``similarity``.
    Descriptors must have unit length (every kind's do). Progress: one unit per image.
    ``rows``: only the pairs that involve one of the first ``rows`` images are counted
    (the rest stay 0)."""
    import torch

    n = len(feats)
    counts = np.zeros((n, n), np.float32)
    if n == 0:
        return counts
    dims = {f.desc.shape[1] for f in feats if len(f)}
    if len(dims) > 1:
        raise ValueError(f"descriptors of different lengths: {sorted(dims)}")
    d = dims.pop() if dims else 1
    most = max(1, max(len(f) for f in feats))
    # padded descriptors; padding rows score -2 (below any cosine) and never match
    pad = torch.zeros(n, most, d)
    valid = torch.zeros(n, most, dtype=torch.bool)
    for i, f in enumerate(feats):
        if len(f):
            pad[i, : len(f)] = torch.from_numpy(np.ascontiguousarray(f.desc, np.float32))
            valid[i, : len(f)] = True
    with torch.inference_mode():
        for i in range(n if rows is None else min(rows, n)):
            k = len(feats[i])
            if k:
                own = pad[i, :k]
                for start in range(i + 1, n, chunk):
                    js = torch.arange(start, min(start + chunk, n))
                    sim = torch.einsum("kd,bmd->bkm", own, pad[js])
                    sim = sim.masked_fill(~valid[js][:, None, :], -2.0)
                    best, nearest = sim.max(dim=2)  # (b, k): each own descriptor's best
                    back = sim.max(dim=1).indices  # (b, m): each other descriptor's best
                    mutual = torch.gather(back, 1, nearest) == torch.arange(k)[None]
                    got = (mutual & (best >= similarity)).sum(dim=1).float().numpy()
                    counts[i, js.numpy()] = got
                    counts[js.numpy(), i] = got
            if progress:
                progress(1)
    return counts


def mutual_neighbour_counts_to(
    query: LocalFeatures,
    gallery: Sequence[LocalFeatures],
    similarity: float = MUTUAL_SIMILARITY,
    chunk: int = 32,
    block: int = 256,
) -> np.ndarray:
    """For one query against each gallery image: how many of their descriptors are each
    other's nearest neighbour with cosine >= ``similarity`` (float32, one per gallery
    image; the row :func:`mutual_neighbour_counts` would give the query). The gallery is
    taken ``block`` images at a time, so memory stays bounded for any gallery size."""
    out = np.zeros(len(gallery), np.float32)
    for start in range(0, len(gallery), block):
        part = list(gallery[start : start + block])
        counts = mutual_neighbour_counts([query, *part], similarity, chunk=chunk, rows=1)
        out[start : start + len(part)] = counts[0, 1:]
    return out


def descriptor_shortlist(counts: np.ndarray, cosine: np.ndarray, top: int) -> np.ndarray:
    """An N×N mask of each row's ``top`` other images with the most mutual neighbours
    (:func:`mutual_neighbour_counts`; ties by the embedding's cosine, then the lower
    index)."""
    from reid.methods.fused import embedding_shortlist  # the same row-wise top k

    cosine = np.clip(np.nan_to_num(np.asarray(cosine, np.float64)), -1.0, 1.0)
    return embedding_shortlist(np.asarray(counts, np.float64) + 1e-3 * cosine, top)
