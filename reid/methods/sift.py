"""Method ``sift``: training-free RootSIFT + ratio test + RANSAC inlier count (or another
kind of local features, :mod:`reid.local`, given as ``local``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from reid.data.records import ImageRecord
from reid.images import crop, load_image
from reid.verify import LocalFeatures, SiftConfig, extract, scores_against


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

    def __init__(self, workers: int = 2, config=None, local: str | None = None) -> None:
        from reid.local import local_config

        self.workers = max(1, workers)
        # config: a kind's settings (reid.local); local: a kind by name (e.g. "xfeat-mnn")
        self.config = config or (local_config(local) if local else SiftConfig())

    def work(self, n_images: int) -> int:
        return 2 * n_images

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
        return self.pairwise(self.features(records, progress), progress)

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
