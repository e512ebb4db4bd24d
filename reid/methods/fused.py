"""Method ``fused``: global (embedding) and local (sift) scores fused by logistic weights.

Every pair is scored by both methods: the cosine similarity of the embeddings and the
``sift`` result, split into its RANSAC inlier count and its tentative-match count (the
sift method's tie-breaker). The fused score is the log-odds of a logistic model of
P(same flank | cosine, log(1 + inliers), sqrt(tentative matches)), all weights >= 0
(cross-fitted, a row may be ranked by a model of a subset of them, or by the sift score
itself: below). The matcher (:mod:`reid.match`) fuses the same way without the
tentative count, which it does not compute for its few verified pairs. The tentative
count matters when no pair is verified: on synth-bench-v1 it ranks those pairs better
than a weak embedding does (mAP 0.529 with it, 0.485 without; BENCHMARKS.md).

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

A logistic fit over pairs is not a ranking fit, and with a weak embedding it can rank
below the local score alone (nyala held-out, torso crops, XFeat matches: fused top-1 0.269
against 0.401). So each half fits four candidates (all three features; the cosine alone;
the two local features alone; the sift score itself) and rates how each ranks that half's
own images (mean of top-1 and mAP); each row is then ranked by the candidate with the best
rating summed over the 8 halves that never saw its label, averaged over those halves, so
that one row's scores share one scale.

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
from reid.local.aliked import REFINE_KEYPOINTS
from reid.methods.embedding import EmbeddingMethod
from reid.methods.sift import SiftMethod, refined_ranking


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
    N×N score, e.g. the local score). Each half fits every candidate of
    :func:`_candidate_subsets` (all features, the first alone, the others alone, the
    fallback alone) and rates its ranking of that half; a row takes the candidate rated
    best over the halves that held it out. ``pairs``: an N×N mask of the pairs a fit may
    learn from (default: every pair i < j); a pair counts only when both images are in
    the fitted half. A row-wise mask (each row's shortlist) counts a pair both rows hold
    twice, and a candidate's rating ranks each row among the images of either row's
    shortlist."""
    n = len(labels)
    names = sorted({lab for lab in labels if lab is not None})
    rng = np.random.default_rng(seed)
    ident = np.array([lab is not None for lab in labels])
    lab = np.array([lab or "" for lab in labels], dtype=object)
    same_all = lab[:, None] == lab[None, :]
    usable = np.triu(np.ones((n, n), bool), k=1) if pairs is None else np.asarray(pairs, bool)
    # the fallback (the local score) is a candidate too, as one feature
    candidates = [*features, np.asarray(fallback, np.float64)]
    subsets = _candidate_subsets(len(features))
    folds = []  # (held-out rows, {candidate: (weights, in-sample quality)})
    for _ in range(max(1, repeats)):
        order = [names[i] for i in rng.permutation(len(names))]
        half = {name: i % 2 for i, name in enumerate(order)}
        fold = np.array([half[x] if x is not None else i % 2 for i, x in enumerate(labels)])
        for f in (0, 1):
            train = (fold == 1 - f) & ident
            fits = _candidate_fits(candidates, subsets, same_all, usable, train, lab)
            if fits:
                folds.append((fold == f, fits))
    # each row's candidate: the best summed quality over the fits that never saw its
    # label (a fold where a candidate could not be fitted adds nothing to it; ties: the
    # first, the full model), so that a row's scores share one scale
    quality = np.zeros((n, len(subsets)))
    for rows, fits in folds:
        for c, (_, q) in fits.items():
            quality[rows, c] += q
    choice = quality.argmax(axis=1)
    total = np.zeros((n, n), np.float64)
    fitted = np.zeros(n, np.int64)
    for rows, fits in folds:
        for c, (w, _) in fits.items():
            take = rows & (choice == c)
            if take.any():
                total[take] += sum(wi * x[take] for wi, x in zip(w, candidates, strict=True) if wi)
                fitted[take] += 1
    fused = np.array(fallback, np.float64)
    ok = fitted > 0
    fused[ok] = total[ok] / fitted[ok, None]
    return fused


def _candidate_subsets(k: int) -> list[tuple[int, ...]]:
    """What a cross-fit may rank by, of ``k`` features and the fallback (index k): all
    the features, the global one (0) alone, the local ones (1..k-1) alone, the fallback
    alone (the local score as the sift method ranks by it)."""
    subsets = [tuple(range(k)), (0,), tuple(range(1, k)), (k,)]
    return [c for i, c in enumerate(subsets) if c and c not in subsets[:i]]


def _candidate_fits(candidates, subsets, same_all, usable, train, lab) -> dict:
    """For each candidate subset of ``candidates`` (the scores and, last, the fallback;
    :func:`_candidate_subsets`) that can be fitted on the pairs within ``train``: its
    weights over all ``candidates`` (zero outside the subset) and how well it ranks the
    ``train`` images among themselves (mean of top-1 and mAP, in sample). A logistic
    fit over all pairs is not a ranking fit: on nyala with XFeat matches it weighed the
    cosine so that fused ranked below the local score alone (BENCHMARKS.md), and
    choosing among the parts keeps fused near the better one."""
    from reid.metrics import retrieval_metrics

    mask = usable & train[:, None] & train[None, :]
    idx = np.flatnonzero(train)
    seen = (usable | usable.T)[np.ix_(idx, idx)]
    fits = {}
    for c, subset in enumerate(subsets):
        w_sub = fusion_weights([candidates[i][mask] for i in subset], same_all[mask])
        if w_sub is None:
            continue
        w = np.zeros(len(candidates))
        w[list(subset)] = w_sub
        score = sum(wi * x[np.ix_(idx, idx)] for wi, x in zip(w, candidates, strict=True) if wi)
        m = retrieval_metrics(score, lab[idx], lab[idx], ks=(1,), exclude=~seen)
        fits[c] = (w, (m["top1"] + m["mAP"]) / 2 if m["queries"] else 0.0)
    return fits


class FusedMethod:
    """Embedding cosine, inliers and tentative matches of every pair, fused by
    cross-fitted logistic weights (per row, of the candidate that ranked the other
    individuals best: all three, the cosine, the local pair, or the sift score;
    :func:`cross_fitted_fusion`), or by fixed ``weights`` (cosine, log(1 + inliers),
    sqrt(tentative)) fitted elsewhere (:meth:`fit`). Progress: the sift method's units
    plus one per image embedded.

    ``top``: verify only each image's ``top`` nearest others by the embedding
    (:func:`embedding_shortlist`), fuse (and fit) on those pairs, and rank them above
    the rest, which keep their cosine order (:func:`shortlisted`): the matcher's
    shortlist, and what makes learned local features affordable on a CPU (N·top pairs,
    not N²/2). ``local_top``: each image's ``local_top`` images with the most mutual
    nearest neighbours among the local descriptors join its shortlist
    (:mod:`reid.local.recall`: recovers answers a weak embedding leaves out; every pair's
    descriptors are compared, no pair verified for it)."""

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
        top: int | None = None,
        local_top: int | None = None,
        refine: int | None = None,
        refine_keypoints: int = REFINE_KEYPOINTS,
        rerank: bool = False,
    ) -> None:
        self.embedding = EmbeddingMethod(workers, model, batch_size, device)
        self.rerank = bool(rerank)
        # local features: rootsift by default; refine: each row's first R by the fused
        # ranking matched again on refine_keypoints (reid.methods.sift.refined_ranking)
        self.sift = SiftMethod(workers, local=local, refine=refine,
                               refine_keypoints=refine_keypoints)  # fmt: skip
        if self.sift.refine and top is None and local_top is None:
            raise ReidError(
                "fused refine re-ranks the first of a shortlist: give top and/or local_top "
                "(reid eval --shortlist / --shortlist-local)"
            )
        self.seed = seed
        if top is not None and top < 1:
            raise ReidError(f"fused top must be at least 1, not {top}")
        self.top = top
        if local_top is not None and local_top < 1:
            raise ReidError(f"fused local_top must be at least 1, not {local_top}")
        self.local_top = local_top
        self.weights = None if weights is None else np.asarray(weights, np.float64)
        if self.weights is not None and self.weights.shape != (3,):
            raise ReidError(f"fused weights must be 3 numbers, got {list(self.weights)}")

    def features(
        self, records: Sequence[ImageRecord], progress: Callable[[int], None] | None = None
    ) -> list[np.ndarray]:
        """The N×N feature matrices: cosine (with ``rerank``: the re-ranked similarity),
        log(1 + inliers), sqrt(tentative matches) (with ``top``, the local ones 0 off the
        shortlist)."""
        cosine, scores, _, _ = self._scored(records, progress)
        return [cosine, *sift_features(scores)]

    def _scored(
        self, records: Sequence[ImageRecord], progress: Callable[[int], None] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list | None]:
        """(cosine, sift scores, shortlist, local features): every pair scored, shortlist
        and features None; with ``top`` and/or ``local_top``, only the pairs of
        :func:`embedding_shortlist` and :func:`reid.local.recall.descriptor_shortlist`
        (0 elsewhere)."""
        e = self.embedding.embeddings(records, progress)
        cosine = (e @ e.T).astype(np.float64)
        if self.rerank:  # the global score is the re-ranked one: shortlist, fit, order below
            from reid.rerank import k_reciprocal_rerank

            cosine = k_reciprocal_rerank(cosine)
        if self.top is None and self.local_top is None:
            return cosine, self.sift.similarity(records, progress).astype(np.float64), None, None
        shortlist = np.zeros(cosine.shape, bool)
        if self.top is not None:
            shortlist |= embedding_shortlist(cosine, self.top)
        local = self.sift.features(records, progress)
        if self.local_top is not None:
            from reid.local.recall import descriptor_shortlist, mutual_neighbour_counts

            first = getattr(self.sift.config, "first", None)  # the keypoints pairs are matched on
            counts = mutual_neighbour_counts(
                local if first is None else [first(f) for f in local], progress=progress
            )
            shortlist |= descriptor_shortlist(counts, cosine, self.local_top)
        scores = self.sift.pairwise_on(local, shortlist, progress).astype(np.float64)
        return cosine, scores, shortlist, local

    def fit(
        self,
        records: Sequence[ImageRecord],
        progress: Callable[[int], None] | None = None,
        exclude: np.ndarray | None = None,
    ) -> np.ndarray:
        """Fit the fused weights on all pairs of the labelled ``records`` (another
        catalogue than the evaluated one; with ``top``, on each image's shortlist, a
        pair both images shortlist counting twice), keep them for :meth:`similarity` and
        return them. ``exclude``: an N×N mask of pairs not learnt from (near-duplicate
        frames; they still shape the re-ranked neighbourhoods). Unidentified records are
        left out."""
        if exclude is not None:
            keep = np.array([r.individual_id is not None for r in records])
            exclude = np.asarray(exclude, bool)[np.ix_(keep, keep)]
        records = [r for r in records if r.individual_id is not None]
        if len({r.individual_id for r in records}) < 2:
            raise ReidError("fitting the fused weights needs labelled images of >= 2 individuals")
        lab = np.array([r.individual_id for r in records], dtype=object)
        cosine, scores, shortlist, _ = self._scored(records, progress)
        if self.sift.refine and progress:  # work() counts a refinement fit() does not do
            progress(len(records))
        feats = [cosine, *sift_features(scores)]
        # fitted on the pairs it will rank: all (each once), or each image's shortlist
        pairs = shortlist
        if pairs is None:
            pairs = np.triu(np.ones((len(lab), len(lab)), bool), k=1)
        if exclude is not None:
            pairs = pairs & ~exclude
        same = (lab[:, None] == lab[None, :])[pairs]
        w = fusion_weights([f[pairs] for f in feats], same)
        if w is None:
            raise ReidError("the fused weights cannot be fitted: no genuine or no impostor pair")
        self.weights = w
        return w

    def work(self, n_images: int) -> int:
        mutual = n_images if self.local_top is not None else 0  # one unit an image
        # the refinement's unit a row is in sift.work; fit() does not refine
        return self.sift.work(n_images) + self.embedding.work(n_images) + mutual

    def similarity(
        self, records: Sequence[ImageRecord], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        labels = [r.individual_id for r in records]
        if self.weights is None and all(lab is None for lab in labels) and len(labels) > 1:
            raise ReidError(
                f"method {self.name} was given unlabelled images and no fused weights fitted "
                "elsewhere: fit them on another labelled catalogue (FusedMethod.fit, or "
                "reid eval --fusion-fit CATALOGUE)"
            )
        cosine, scores, shortlist, local = self._scored(records, progress)
        feats = [cosine, *sift_features(scores)]
        if self.weights is not None:
            fused = sum(w * x for w, x in zip(self.weights, feats, strict=True))
        else:
            fused = cross_fitted_fusion(feats, labels, scores, self.seed, pairs=shortlist)
        if shortlist is not None:
            fused = shortlisted(fused, cosine, shortlist)
        if self.sift.refine and local is not None:
            # within the shortlist: what the first stage never scored cannot jump ahead
            fused = refined_ranking(fused, local, self.sift.config, self.sift.refine,
                                    self.sift.workers, progress, within=shortlist)  # fmt: skip
        return np.asarray(fused, np.float32)


class RerankedFusedMethod(FusedMethod):
    """Method ``fused-rerank``: :class:`FusedMethod` whose global score is the embedding's
    similarity re-ranked by k-reciprocal neighbours among all the images scored together
    (as ``embedding-rerank``: :func:`reid.rerank.k_reciprocal_rerank`, no label used).
    That score chooses the shortlist, is the fit's first feature and orders the images
    below the shortlist, so the shortlist's local verification and the gallery's own
    neighbourhoods add up: on ATRW the re-ranking lifts mAP (images beyond the shortlist
    move up), the local features the first places (BENCHMARKS.md, "Re-ranking, then
    local features")."""

    name = "fused-rerank"

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("rerank", True)
        super().__init__(*args, **kwargs)


def embedding_shortlist(cosine: np.ndarray, top: int) -> np.ndarray:
    """An N×N mask of each row's ``top`` most similar other images by the embedding's
    cosine (ties: the lower index first): the pairs that ``FusedMethod(top=...)`` (``reid
    eval --shortlist``) verifies, as the matcher verifies its ``verify_top`` candidates.
    Label-blind: on ATRW, near-duplicate frames that the protocol removes afterwards
    take some of a query's places (about 7.5 of them on ATRW train's held-out split), so
    a shortlist there should be longer than the matcher's."""
    c = np.array(cosine, np.float64)
    np.fill_diagonal(c, -np.inf)
    k = min(top, len(c) - 1)
    mask = np.zeros(c.shape, bool)
    if k > 0:
        best = np.argsort(-c, axis=1, kind="stable")[:, :k]
        mask[np.arange(len(c))[:, None], best] = True
    return mask


def shortlisted(fused: np.ndarray, cosine: np.ndarray, shortlist: np.ndarray) -> np.ndarray:
    """Each row's shortlisted images ranked by ``fused`` above all its other images, which
    keep their cosine order below (the order ``reid match`` gives: verified candidates
    first)."""
    fused = np.asarray(fused, np.float64)
    cosine = np.asarray(cosine, np.float64)
    if not shortlist.any():
        return cosine
    # finite values only: one NaN must not lift (or sink) every shortlisted pair
    below = cosine[~shortlist]
    inside = fused[shortlist]
    top = float(np.max(below[np.isfinite(below)], initial=-np.inf))
    bottom = float(np.min(inside[np.isfinite(inside)], initial=np.inf))
    lift = top - bottom + 1.0 if np.isfinite(top) and np.isfinite(bottom) else 0.0
    return np.where(shortlist, fused + max(lift, 0.0), cosine)
