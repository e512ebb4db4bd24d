"""Local-feature matching with geometric verification (RootSIFT, ratio test, RANSAC).

This is both the training-free ``sift`` baseline and the geometric verifier of the
matcher: a query flank and a gallery flank are compared by matching RootSIFT
descriptors (Lowe's ratio test plus a mutual-nearest-neighbour check) and keeping the
matches consistent with one homography found by RANSAC. The score is the inlier count.

Flank rules: a homography that mirrors the image (negative determinant of its linear
part) is rejected, because a mirrored flank is not the same pattern; extreme scale or
shear is rejected as implausible for two photos of one flank.

Matching one query against many gallery images is vectorised: descriptors are padded
to a fixed count per image so that one matrix product scores a block of images.

:class:`SiftConfig` is one kind of local features (``rootsift``); learned ones
(:mod:`reid.local`) follow the same interface: ``extract``, ``verify_many``,
``scores_against`` and ``fingerprint`` (what a gallery's cached keypoints must agree on),
and share this module's geometric check of tentative matches (:func:`verify_tentative`,
:func:`score_tentative`), except ALIKED's default, which counts LightGlue's confident
matches (:mod:`reid.local.aliked`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np

#: A homography whose linear part scales area by more than this (or less than its
#: inverse) is not two photos of one flank.
MAX_AREA_SCALE = 12.0
#: Camera traps are level and flanks horizontal: a larger in-plane rotation between two
#: photos of one flank is implausible (and with a flip of the image, a mirror in disguise).
MAX_ROTATION_DEG = 45.0
#: Bound on the perspective terms (|h31|·w + |h32|·h over the matched region).
MAX_PERSPECTIVE = 0.6


@dataclass(frozen=True)
class SiftConfig:
    """Parameters of extraction and matching; the defaults were chosen on synthetic flanks."""

    name: ClassVar[str] = "rootsift"

    max_side: int = 480  # images are resized so that the long side is at most this
    n_features: int = 500  # strongest keypoints kept per image
    contrast_threshold: float = 0.02  # lower than OpenCV's 0.04: night shots are flat
    clahe: bool = True  # local contrast equalisation before detection
    ratio: float = 0.85  # Lowe's ratio test on descriptor distances
    mutual: bool = True  # keep only mutual nearest neighbours
    ransac_threshold: float = 0.02  # reprojection threshold as a fraction of max_side
    min_inliers: int = 6  # fewer inliers than this scores 0

    def fingerprint(self) -> dict:
        """What cached gallery keypoints must have been extracted with (matching
        parameters may differ between enrolment and a query)."""
        return {
            "kind": self.name,
            "max_side": self.max_side,
            "n_features": self.n_features,
            "contrast_threshold": self.contrast_threshold,
            "clahe": self.clahe,
        }

    def extract(self, image: np.ndarray) -> LocalFeatures:
        return extract(image, self)

    def verify_many(
        self, query: LocalFeatures, gallery: Sequence[LocalFeatures]
    ) -> list[Verification]:
        return verify_many(query, gallery, self)

    def scores_against(
        self, query: LocalFeatures, gallery: Sequence[LocalFeatures]
    ) -> np.ndarray:
        return scores_against(query, gallery, self)


@dataclass(frozen=True)
class LocalFeatures:
    """Keypoint positions (N×2, in the resized image) and descriptors (N×D: RootSIFT's
    128, a learned extractor's own); ``size``: (width, height) of the resized image
    (learned matchers normalise positions by it; (0, 0) when not recorded)."""

    xy: np.ndarray
    desc: np.ndarray
    scale: float  # resized = original * scale; divide xy by it for original pixels
    size: tuple[int, int] = (0, 0)

    def __len__(self) -> int:
        return len(self.xy)

    def strongest(self, n: int) -> LocalFeatures:
        """The first ``n`` keypoints: the strongest ``n`` for an extractor that orders
        them strongest first (ALIKED); itself when it holds no more than ``n``."""
        if len(self.xy) <= n:
            return self
        return LocalFeatures(self.xy[:n], self.desc[:n], self.scale, self.size)


@dataclass(frozen=True)
class Verification:
    """The result of verifying one pair: inlier count and the inlier correspondences."""

    inliers: int
    query_xy: np.ndarray  # K×2 in original pixels of the query
    gallery_xy: np.ndarray  # K×2 in original pixels of the gallery image
    homography: np.ndarray | None


def fit_to_side(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """``image`` shrunk (area interpolation) so that its long side is at most
    ``max_side``, and the scale applied (1.0: unchanged); every kind of local features
    extracts from it and records the scale in :class:`LocalFeatures`."""
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:  # a side never rounds to 0 px (an 8000 x 1 upload did, and crashed)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return image, scale


def extract(gray: np.ndarray, config=None) -> LocalFeatures:
    """Local features of an image (greyscale or RGB uint8) by ``config``'s kind (None:
    RootSIFT with the default :class:`SiftConfig`)."""
    if config is None:
        config = SiftConfig()
    if not isinstance(config, SiftConfig):
        return config.extract(gray)
    if gray.ndim == 3:
        gray = cv2.cvtColor(gray, cv2.COLOR_RGB2GRAY)
    gray, scale = fit_to_side(gray, config.max_side)
    if config.clahe:
        gray = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(gray)
    sift = cv2.SIFT_create(nfeatures=config.n_features, contrastThreshold=config.contrast_threshold)
    keypoints, desc = sift.detectAndCompute(gray, None)
    size = (gray.shape[1], gray.shape[0])
    if desc is None or not keypoints:
        empty = np.zeros((0, 2), np.float32)
        return LocalFeatures(empty, np.zeros((0, 128), np.float32), scale, size)
    # OpenCV may return a few more than nfeatures when responses tie.
    keypoints, desc = keypoints[: config.n_features], desc[: config.n_features]
    desc = desc.astype(np.float32)
    desc /= desc.sum(axis=1, keepdims=True) + 1e-7  # RootSIFT: L1-normalise, then sqrt
    desc = np.sqrt(desc)
    xy = np.array([kp.pt for kp in keypoints], dtype=np.float32)
    return LocalFeatures(xy, desc, scale, size)


def _padded(
    features: Sequence[LocalFeatures], k: int, dim: int = 128
) -> tuple[np.ndarray, np.ndarray]:
    """Stack descriptors to (M, k, dim) with a validity mask (M, k)."""
    desc = np.zeros((len(features), k, dim), np.float32)
    valid = np.zeros((len(features), k), bool)
    for i, f in enumerate(features):
        n = min(len(f), k)
        desc[i, :n] = f.desc[:n]
        valid[i, :n] = True
    return desc, valid


def tentative_matches(
    query: LocalFeatures, gallery: Sequence[LocalFeatures], config: SiftConfig = SiftConfig()
) -> list[np.ndarray]:
    """For each gallery image, the (query index, gallery index) pairs passing the tests
    (``config.ratio``, ``config.mutual``); descriptors must have unit L2 norm."""
    out: list[np.ndarray] = [np.zeros((0, 2), np.int64) for _ in gallery]
    if len(query) < 2 or not gallery:
        return out
    k = max(2, max(len(f) for f in gallery))
    block = max(1, 8_000_000 // (len(query) * k))  # bound memory of one product
    nq = len(query)
    dim = query.desc.shape[1]
    rows = np.arange(nq)
    for start in range(0, len(gallery), block):
        chunk = gallery[start : start + block]
        desc, valid = _padded(chunk, k, dim)
        # RootSIFT vectors have unit L2 norm: squared distance = 2 - 2 * dot product.
        # One matrix product scores the whole block: (q, 128) x (128, m*k).
        sim = (query.desc @ desc.reshape(-1, dim).T).reshape(nq, len(chunk), k)
        if not valid.all():  # padding (images with fewer keypoints) never matches
            sim[:, ~valid] = -np.inf
        for j in range(len(chunk)):
            s = sim[:, j, :]  # (q, k): rows contiguous, no transposed copy
            best = s.argmax(axis=1)
            first = s[rows, best]
            s[rows, best] = -np.inf
            second = s.max(axis=1)  # second best, cheaper than a partition
            s[rows, best] = first
            d1 = np.sqrt(np.maximum(2 - 2 * first, 0))
            d2 = np.sqrt(np.maximum(2 - 2 * second, 0))
            ok = (d1 < config.ratio * d2) & np.isfinite(first)
            qi = np.flatnonzero(ok)
            if config.mutual and len(qi):
                # Mutual nearest neighbours: the gallery keypoint's best query keypoint is
                # us. Only the columns of the few pairs that passed the ratio test are
                # searched (a full column argmax of the strided block cost a fifth of
                # the matching).
                qi = qi[s[:, best[qi]].argmax(axis=0) == qi]
            pairs = np.stack([qi, best[qi]], axis=1)
            out[start + j] = _unique_locations(pairs, query.xy, chunk[j].xy)
    return out


def _unique_locations(pairs: np.ndarray, qxy: np.ndarray, gxy: np.ndarray) -> np.ndarray:
    """Keep one match per query location and per gallery location.

    SIFT puts several keypoints (one per dominant orientation) on one location; counting
    them all would let a handful of coincident points look like a verified geometry.
    """
    return pairs[_unique_location_rows(pairs, qxy, gxy)]


def _unique_location_rows(pairs: np.ndarray, qxy: np.ndarray, gxy: np.ndarray) -> np.ndarray:
    """The rows of ``pairs`` that :func:`_unique_locations` keeps, in order (so that
    values per match, e.g. a matcher's confidences, can be kept alongside)."""
    if len(pairs) == 0:
        return np.zeros(0, np.int64)
    qkey = np.round(qxy[pairs[:, 0]]).astype(np.int64) @ np.array([1, 1 << 20])
    _, first_q = np.unique(qkey, return_index=True)
    rows = np.sort(first_q)
    gkey = np.round(gxy[pairs[rows, 1]]).astype(np.int64) @ np.array([1, 1 << 20])
    _, first_g = np.unique(gkey, return_index=True)
    return rows[np.sort(first_g)]


def _plausible(H: np.ndarray, src: np.ndarray) -> bool:
    """Orientation-preserving, bounded scale, rotation and perspective, and no fold."""
    det = float(np.linalg.det(H[:2, :2]))
    if det <= 0 or not (1 / MAX_AREA_SCALE < det < MAX_AREA_SCALE):
        return False  # mirrored (the other flank's pattern) or implausible scale
    if abs(np.degrees(np.arctan2(H[1, 0], H[0, 0]))) > MAX_ROTATION_DEG:
        return False
    (x0, y0), (x1, y1) = src.min(axis=0), src.max(axis=0)
    if abs(H[2, 0]) * (x1 - x0) + abs(H[2, 1]) * (y1 - y0) > MAX_PERSPECTIVE:
        return False
    quad = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)
    ones = np.ones((4, 1))
    p = np.hstack([quad, ones]) @ H.T
    if np.any(p[:, 2] <= 1e-9):
        return False  # the region crosses the horizon line of the homography
    q = p[:, :2] / p[:, 2:]
    edges = np.roll(q, -1, axis=0) - q
    cross = (
        edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1]
        - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0]
    )
    return bool(np.all(cross > 0))  # convex and orientation-preserving: not folded


def _ransac(
    src: np.ndarray, dst: np.ndarray, config
) -> tuple[int, np.ndarray | None, np.ndarray | None]:
    """:func:`geometric_check` with ``config``'s threshold (``ransac_threshold`` ×
    ``max_side``) and ``min_inliers``: any kind of local features that has them."""
    return geometric_check(src, dst, config.ransac_threshold * config.max_side, config.min_inliers)


def geometric_check(
    src: np.ndarray, dst: np.ndarray, threshold: float, min_inliers: int
) -> tuple[int, np.ndarray | None, np.ndarray | None]:
    """(inlier count, homography, inlier mask) of tentative correspondences ``src`` ->
    ``dst`` (pixels of the resized images), or (0, None, None) when fewer than
    ``min_inliers`` agree on one plausible (:func:`_plausible`) homography within
    ``threshold`` pixels."""
    if len(src) < max(4, min_inliers):
        return 0, None, None
    # OpenCV's USAC (PROSAC sampling, local optimisation) is ~80x faster than classic
    # RANSAC here at equal accuracy, and seeded: the same pair gives the same result.
    H, mask = cv2.findHomography(
        src, dst, cv2.USAC_FAST, threshold, maxIters=2000, confidence=0.995
    )
    if H is None or mask is None:
        return 0, None, None
    inliers = mask.ravel().astype(bool)
    n = int(inliers.sum())
    if n < min_inliers or not _plausible(H, src[inliers]):
        return 0, None, None
    return n, H, inliers


def verify_many(
    query: LocalFeatures,
    gallery: Sequence[LocalFeatures],
    config=None,
) -> list[Verification]:
    """Verify one query against each gallery image; returns one result per gallery image.
    ``config``: the kind of local features (None: the default :class:`SiftConfig`)."""
    if config is None:
        config = SiftConfig()
    if not isinstance(config, SiftConfig):
        return config.verify_many(query, gallery)
    return verify_tentative(query, gallery, tentative_matches(query, gallery, config), config)


def verify_tentative(
    query: LocalFeatures,
    gallery: Sequence[LocalFeatures],
    tentative: Sequence[np.ndarray],
    config,
) -> list[Verification]:
    """The geometric check of each gallery image's tentative (query index, gallery index)
    pairs, whichever matcher found them; one result per gallery image, inliers in original
    pixels. ``config``: any kind of local features (its ``ransac_threshold``, ``max_side``
    and ``min_inliers``)."""
    results = []
    for g, pairs in zip(gallery, tentative, strict=True):
        src = query.xy[pairs[:, 0]]
        dst = g.xy[pairs[:, 1]]
        n, H, inl = _ransac(src, dst, config)
        if n == 0:
            empty = np.zeros((0, 2), np.float32)
            results.append(Verification(0, empty, empty, None))
            continue
        results.append(Verification(n, src[inl] / query.scale, dst[inl] / g.scale, H))
    return results


def score_tentative(
    query: LocalFeatures,
    gallery: Sequence[LocalFeatures],
    tentative: Sequence[np.ndarray],
    config,
) -> np.ndarray:
    """The score of :func:`scores_against` from each gallery image's tentative pairs,
    whichever matcher found them (``config`` as for :func:`verify_tentative`)."""
    scores = np.zeros(len(gallery), np.float32)
    for j, (g, pairs) in enumerate(zip(gallery, tentative, strict=True)):
        n, _, _ = _ransac(query.xy[pairs[:, 0]], g.xy[pairs[:, 1]], config)
        scores[j] = n + min(len(pairs), 999) / 1000.0
    return scores


def scores_against(
    query: LocalFeatures, gallery: Sequence[LocalFeatures], config=None
) -> np.ndarray:
    """The ``sift`` score of one query against each gallery image (float32 vector).

    The score is the RANSAC inlier count plus a tie-breaker below one: the number of
    tentative matches / 1000 (at most ``n_features`` / 1000 < 1), so that pairs without a
    verified geometry are still ordered by how many descriptors agreed.
    """
    if config is None:
        config = SiftConfig()
    if not isinstance(config, SiftConfig):
        return config.scores_against(query, gallery)
    return score_tentative(query, gallery, tentative_matches(query, gallery, config), config)
