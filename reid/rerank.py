"""k-reciprocal re-ranking (Zhong et al., CVPR 2017) of an all-against-all similarity.

When every image is both a query and a gallery image (``reid eval``, the ATRW plain
protocol, a season's encounters), the neighbourhoods of the gallery itself say more than
one query's scores: two photos of one tiger share their k-reciprocal nearest neighbours
(each is among the other's k nearest) even when their direct similarity is hurt by pose
or light. The re-ranked distance mixes the Jaccard distance of the (expanded,
soft-weighted) k-reciprocal sets with the original distance. It uses no label, so it is
legal on a test set; the CVWC 2019 winners on ATRW used it.

The parameters are the paper's (k1 = 20, k2 = 6, lambda = 0.3), not tuned here.
"""

from __future__ import annotations

import numpy as np

__all__ = ["k_reciprocal_rerank"]


def _k_reciprocal(rank: np.ndarray, i: int, k: int) -> np.ndarray:
    forward = rank[i, : k + 1]
    backward = rank[forward, : k + 1]
    return forward[np.any(backward == i, axis=1)]


def k_reciprocal_rerank(
    similarity: np.ndarray, k1: int = 20, k2: int = 6, lambda_value: float = 0.3
) -> np.ndarray:
    """Re-ranked similarity (N × N, higher = more alike) of a cosine similarity matrix of
    unit vectors; the diagonal is treated as each image's similarity to itself (1).

    Returns ``-distance`` so that higher stays better; it is meant for ranking, not as a
    calibrated score. With fewer than 3 images the input is returned unchanged.
    """
    sim = np.asarray(similarity, np.float64)
    n = len(sim)
    if sim.shape != (n, n):
        raise ValueError(f"similarity must be square, got {sim.shape}")
    if n < 3:
        return sim.copy()
    k1 = int(min(k1, n - 1))
    k2 = int(max(1, min(k2, n)))
    sim = sim.copy()
    np.fill_diagonal(sim, 1.0)
    dist = np.clip(2.0 - 2.0 * sim, 0.0, None)  # squared Euclidean distance of unit vectors
    dist = dist / np.maximum(dist.max(axis=1, keepdims=True), 1e-12)  # as the reference code
    rank = np.argsort(dist, axis=1, kind="stable")
    v = np.zeros((n, n), np.float64)
    half = int(np.around(k1 / 2.0))
    for i in range(n):
        recip = _k_reciprocal(rank, i, k1)
        expanded = recip
        for j in recip:
            cand = _k_reciprocal(rank, int(j), half)
            if len(np.intersect1d(cand, recip)) > 2.0 / 3.0 * len(cand):
                expanded = np.append(expanded, cand)
        expanded = np.unique(expanded)
        weight = np.exp(-dist[i, expanded])
        v[i, expanded] = weight / weight.sum()
    if k2 > 1:  # local query expansion
        v = v[rank[:, :k2]].mean(axis=1)
    # Jaccard distance through the inverted index: min-sum over shared neighbours
    jaccard = np.empty((n, n), np.float64)
    for i in range(n):
        nz = np.nonzero(v[i])[0]
        shared = np.minimum(v[i, nz][None, :], v[:, nz]).sum(axis=1)
        jaccard[i] = 1.0 - shared / (2.0 - shared)
    final = jaccard * (1.0 - lambda_value) + dist * lambda_value
    return -final
