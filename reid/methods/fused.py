"""Method ``fused``: global (embedding) and local (sift) scores fused by logistic weights.

Every pair is scored by both methods: the cosine similarity of the embeddings and the
``sift`` result, split into its RANSAC inlier count and its tentative-match count (the
sift method's tie-breaker). The fused score is the log-odds of a logistic model of
P(same flank | cosine, log(1 + inliers), sqrt(tentative matches)), all weights >= 0.
The matcher (:mod:`reid.match`) fuses the same way without the tentative count, which
it does not compute for its few verified pairs. The tentative count matters when no
pair is verified: on synth-bench-v1 it ranks those pairs better than a weak embedding
does (mAP 0.529 with it, 0.485 without; BENCHMARKS.md).

The weights are *cross-fitted* so that no query is ranked by a model that saw its own
label: the individuals of a group are split in two halves (seeded), and the rows of
one half are scored with the model fitted on the pairs within the other half. That is
done :data:`CROSS_FIT_REPEATS` times over different random halvings, and each row's
fused score is the mean over the repeats of the scores of models that never saw its
label. One halving leaves the weights at the mercy of which few individuals fall in
which half (fitted on 5 of ATRW's held-out tigers, the cosine weight ranged from 7 to 30
between halvings), and a cosine weighted too high overrules the tentative matches that
rank the queries without inliers. Re-ranking the embedding's top 20 with RootSIFT, the
mean of 8 halvings gave top-1 / mAP 0.877 / 0.702 on ATRW held-out (one halving 0.871 /
0.700, the local score alone 0.880 / 0.687) and 0.190 / 0.147 on nyala held-out (one
halving 0.149 / 0.140, local alone 0.153 / 0.142; BENCHMARKS.md, "Local features (issue
25)"). When a half has no genuine pair to learn from, that repeat leaves its rows out;
rows no repeat could fit are ranked by the sift score alone.

Cross-fitting uses the evaluated catalogue's labels (never a query's own). A benchmark
whose labels must not inform the ranking at all (ATRW: :mod:`reid.atrw_eval` gives the
method unlabelled images) needs weights fitted elsewhere: ``FusedMethod(weights=...)``,
e.g. from :meth:`FusedMethod.fit` on another labelled catalogue; without them, a method
given unlabelled images refuses (:class:`~reid.errors.ReidError`) rather than fall
back silently to sift.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from reid.calibrate import LogisticCalibrator
from reid.data.records import ImageRecord
from reid.errors import ReidError
from reid.methods.embedding import EmbeddingMethod
from reid.methods.sift import SiftMethod


def fusion_weights(features: Sequence[np.ndarray], same: np.ndarray) -> np.ndarray:
    """Weights of the logistic model fitted on pairs (one 1-D array per feature); None
    of them negative. ``None`` when the pairs hold one class only."""
    if same.all() or not same.any():
        return None
    model = LogisticCalibrator().fit(np.column_stack(features), same)
    w = np.array(model.weights)
    return w if w.any() else None


def sift_features(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log(1 + inliers), sqrt(tentative matches)) from ``sift`` scores (inliers plus
    tentative matches / 1000)."""
    s = np.asarray(scores, np.float64)
    inliers = np.floor(s)
    tentative = np.round((s - inliers) * 1000)
    return np.log1p(inliers), np.sqrt(tentative)


#: Random halvings of the individuals whose cross-fitted scores are averaged.
CROSS_FIT_REPEATS = 8


def cross_fitted_fusion(
    features: Sequence[np.ndarray],
    labels: Sequence[str | None],
    fallback: np.ndarray,
    seed: int = 0,
    repeats: int = CROSS_FIT_REPEATS,
    pairs: np.ndarray | None = None,
) -> np.ndarray:
    """An N×N fused score matrix from N×N feature matrices and the images' individuals
    (None: unidentified, never a training label), cross-fitted over ``repeats`` random
    halvings of the individuals (the first is the seed's single halving of earlier
    versions) and averaged per row; rows that no halving could fit get ``fallback`` (an
    N×N score). ``pairs``: an N×N mask of the pairs a fit may learn from (default: every
    pair i < j); a pair counts only when both images are in the fitted half."""
    n = len(labels)
    names = sorted({lab for lab in labels if lab is not None})
    rng = np.random.default_rng(seed)
    ident = np.array([lab is not None for lab in labels])
    lab = np.array([lab or "" for lab in labels], dtype=object)
    same_all = lab[:, None] == lab[None, :]
    usable = np.triu(np.ones((n, n), bool), k=1) if pairs is None else np.asarray(pairs, bool)
    total = np.zeros((n, n), np.float64)
    fitted = np.zeros(n, np.int64)
    for _ in range(max(1, repeats)):
        order = [names[i] for i in rng.permutation(len(names))]
        half = {name: i % 2 for i, name in enumerate(order)}
        fold = np.array([half[x] if x is not None else i % 2 for i, x in enumerate(labels)])
        for f in (0, 1):
            train = (fold == 1 - f) & ident
            mask = usable & train[:, None] & train[None, :]
            w = fusion_weights([x[mask] for x in features], same_all[mask])
            if w is None:
                continue
            rows = fold == f
            total[rows] += sum(wi * x[rows] for wi, x in zip(w, features, strict=True))
            fitted[rows] += 1
    fused = np.array(fallback, np.float64)
    ok = fitted > 0
    fused[ok] = total[ok] / fitted[ok, None]
    return fused


class FusedMethod:
    """Embedding cosine, inliers and tentative matches of every pair, fused by
    cross-fitted logistic weights, or by fixed ``weights`` (cosine, log(1 + inliers),
    sqrt(tentative)) fitted elsewhere (:meth:`fit`). Progress: the sift method's units
    plus one per image embedded."""

    name = "fused"

    def __init__(
        self,
        workers: int = 2,
        model: Path | str | None = None,
        batch_size: int = 32,
        device: str = "cpu",
        seed: int = 0,
        weights: Sequence[float] | None = None,
        local: str | None = None,
    ) -> None:
        self.embedding = EmbeddingMethod(workers, model, batch_size, device)
        self.sift = SiftMethod(workers, local=local)  # local features: rootsift by default
        self.seed = seed
        self.weights = None if weights is None else np.asarray(weights, np.float64)
        if self.weights is not None and self.weights.shape != (3,):
            raise ReidError(f"fused weights must be 3 numbers, got {list(self.weights)}")

    def features(
        self, records: Sequence[ImageRecord], progress: Callable[[int], None] | None = None
    ) -> list[np.ndarray]:
        """The N×N feature matrices: cosine, log(1 + inliers), sqrt(tentative matches)."""
        e = self.embedding.embeddings(records, progress)
        cosine = (e @ e.T).astype(np.float64)
        scores = self.sift.similarity(records, progress).astype(np.float64)
        return [cosine, *sift_features(scores)]

    def fit(
        self,
        records: Sequence[ImageRecord],
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Fit the fused weights on all pairs of the labelled ``records`` (another
        catalogue than the evaluated one), keep them for :meth:`similarity` and return
        them. Unidentified records are left out."""
        records = [r for r in records if r.individual_id is not None]
        if len({r.individual_id for r in records}) < 2:
            raise ReidError("fitting the fused weights needs labelled images of >= 2 individuals")
        feats = self.features(records, progress)
        lab = np.array([r.individual_id for r in records], dtype=object)
        upper = np.triu(np.ones((len(lab), len(lab)), bool), k=1)
        same = (lab[:, None] == lab[None, :])[upper]
        w = fusion_weights([f[upper] for f in feats], same)
        if w is None:
            raise ReidError("the fused weights cannot be fitted: no genuine or no impostor pair")
        self.weights = w
        return w

    def work(self, n_images: int) -> int:
        return self.sift.work(n_images) + self.embedding.work(n_images)

    def similarity(
        self, records: Sequence[ImageRecord], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        labels = [r.individual_id for r in records]
        if self.weights is None and all(lab is None for lab in labels) and len(labels) > 1:
            raise ReidError(
                "method fused was given unlabelled images and no fused weights fitted "
                "elsewhere: fit them on another labelled catalogue (FusedMethod.fit, or "
                "reid eval --fusion-fit CATALOGUE)"
            )
        e = self.embedding.embeddings(records, progress)
        cosine = (e @ e.T).astype(np.float64)
        scores = self.sift.similarity(records, progress).astype(np.float64)
        inliers, tentative = sift_features(scores)
        feats = [cosine, inliers, tentative]
        if self.weights is not None:
            fused = sum(w * x for w, x in zip(self.weights, feats, strict=True))
        else:
            fused = cross_fitted_fusion(feats, labels, scores, self.seed)
        return np.asarray(fused, np.float32)
