"""Method ``sift``: training-free RootSIFT + ratio test + RANSAC inlier count (or another
kind of local features, :mod:`reid.local`, given as ``local``)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from reid.data.records import ImageRecord
from reid.errors import ReidError
from reid.images import crop, load_image
from reid.local.aliked import REFINE_KEYPOINTS
from reid.verify import LocalFeatures, SiftConfig, extract, scores_against


def check_refine(refine: int | None) -> int:
    """``refine`` as a count (None: 0, off); a clear error below 0."""
    if refine is None:
        return 0
    if refine < 0:
        raise ReidError(f"refine must be 0 (off) or more, not {refine}")
    return int(refine)


def with_refinement(config, keypoints: int):
    """``config`` keeping ``keypoints`` per image for the refinement; refused for kinds
    that cannot (only ALIKED keeps more keypoints than it matches: its plain extraction's
    ``max_keypoints`` first, then the others of the larger top k)."""
    from dataclasses import replace

    if not hasattr(config, "refine_keypoints"):
        raise ReidError(
            f"--refine needs local features that keep more keypoints than they match "
            f"(--local aliked), not {config.name}"
        )
    if keypoints <= config.max_keypoints:
        raise ReidError(
            f"--refine-keypoints ({keypoints}) must exceed the {config.max_keypoints} "
            "keypoints every pair is matched on"
        )
    return replace(config, refine_keypoints=keypoints)


def refined_ranking(
    sim: np.ndarray,
    feats: Sequence[LocalFeatures],
    config,
    refine: int,
    workers: int = 2,
    progress: Callable[[int], None] | None = None,
    within: np.ndarray | None = None,
) -> np.ndarray:
    """Each row's first ``refine`` others by ``sim`` matched again on all their kept
    keypoints (``config.refined()``) and ranked by that score (ties: ``sim``) above the
    row's other images, which keep ``sim``'s order below. Only finite entries of other
    images are chosen, and with ``within`` (N×N) only those it marks (a shortlist:
    nothing outside it jumps ahead on scores it never had at the first stage).
    Label-blind. Each unordered pair is matched once; progress: one unit per row."""
    sim = np.asarray(sim, np.float64)
    n = len(sim)
    allowed = np.isfinite(sim) & ~np.eye(n, dtype=bool)
    if within is not None:
        allowed &= np.asarray(within, bool)
    s = np.where(allowed, sim, -np.inf)
    order = np.argsort(-s, axis=1, kind="stable")
    first = [
        [int(j) for j in order[i, : min(refine, int(allowed[i].sum()))]] for i in range(n)
    ]
    want: dict[int, set[int]] = {}
    for i, row in enumerate(first):
        for j in row:
            want.setdefault(min(i, j), set()).add(max(i, j))
    fine = config.refined()
    score: dict[tuple[int, int], float] = {}
    lock = threading.Lock()

    def row(i: int) -> None:
        js = sorted(want.get(i, ()))
        if js:
            got = scores_against(feats[i], [feats[j] for j in js], fine)
            with lock:
                score.update({(i, j): float(v) for j, v in zip(js, got, strict=True)})
        if progress:
            progress(1)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(row, range(n)))
    finite = sim[np.isfinite(sim)]
    top = float(finite.max()) if len(finite) else 0.0
    out = sim.copy()
    for i, js in enumerate(first):
        ranked = sorted(js, key=lambda j: (-score[min(i, j), max(i, j)], -s[i, j], j))
        for place, j in enumerate(ranked):
            out[i, j] = top + 1.0 + (len(ranked) - place)
    return out


def features_of(record: ImageRecord, config=None) -> LocalFeatures:
    """Decode a record's image, crop its box if it has one, and extract local features."""
    image = load_image(record.path)
    if record.bbox is not None:
        image = crop(image, record.bbox)
    return extract(image, config)


class SiftMethod:
    """All-pairs local-feature verification, parallel over worker threads.

    Threads, not processes: decoding, SIFT, the descriptor products and RANSAC all run
    in C with the GIL released (measured on 2 cores: a process pool was no faster, and
    forking after OpenCV has started its thread pool can deadlock). Pair scores are
    symmetric, so only i < j is computed. Progress: one unit per image extracted plus
    one per query row scored.
    """

    name = "sift"

    def __init__(
        self,
        workers: int = 2,
        config=None,
        local: str | None = None,
        refine: int | None = None,
        refine_keypoints: int = REFINE_KEYPOINTS,
    ) -> None:
        from reid.local import local_config

        self.workers = max(1, workers)
        # config: a kind's settings (reid.local); local: a kind by name (e.g. "xfeat-mnn")
        self.config = config or (local_config(local) if local else SiftConfig())
        #: each query's first ``refine`` matched again on more keypoints (refined_ranking)
        self.refine = check_refine(refine)
        if self.refine:
            self.config = with_refinement(self.config, refine_keypoints)

    def work(self, n_images: int) -> int:
        return (3 if self.refine else 2) * n_images

    def features(
        self, records: Sequence[ImageRecord], progress: Callable[[int], None] | None = None
    ) -> list[LocalFeatures]:
        def one(record: ImageRecord) -> LocalFeatures:
            f = features_of(record, self.config)
            if progress:
                progress(1)
            return f

        with ThreadPoolExecutor(self.workers) as pool:
            return list(pool.map(one, records))

    def similarity(
        self, records: Sequence[ImageRecord], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        feats = self.features(records, progress)
        sim = self.pairwise(feats, progress)
        if self.refine:
            sim = refined_ranking(sim, feats, self.config, self.refine, self.workers, progress)
        return sim

    def pairwise(
        self, feats: Sequence[LocalFeatures], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        n = len(feats)
        sim = np.zeros((n, n), np.float32)

        def row(i: int) -> None:
            scores = scores_against(feats[i], feats[i + 1 :], self.config)
            sim[i, i + 1 :] = scores
            sim[i + 1 :, i] = scores
            if progress:
                progress(1)

        with ThreadPoolExecutor(self.workers) as pool:
            list(pool.map(row, range(n)))
        return sim

    def pairwise_on(
        self,
        feats: Sequence[LocalFeatures],
        mask: np.ndarray,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Scores of the pairs ``mask`` (N×N) marks only, each unordered pair once and
        written both ways; every other entry 0. Progress: one unit per row, as
        :meth:`pairwise`."""
        n = len(feats)
        mask = np.asarray(mask, bool)
        either = np.triu(mask | mask.T, k=1)
        sim = np.zeros((n, n), np.float32)

        def row(i: int) -> None:
            js = np.flatnonzero(either[i])
            if len(js):
                scores = scores_against(feats[i], [feats[j] for j in js], self.config)
                sim[i, js] = scores
                sim[js, i] = scores
            if progress:
                progress(1)

        with ThreadPoolExecutor(self.workers) as pool:
            list(pool.map(row, range(n)))
        return sim
