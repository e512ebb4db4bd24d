"""Near-duplicate photos of one individual, found without any model.

Photos cut from videos (ATRW: consecutive frames of one walk) are near-duplicates: a
query whose next frame is in its gallery is matched by the frame, not by the animal's
pattern, and top-1 says nothing. The ATRW test protocol drops same-tiger images of the
same camera within ±3 frames from each query's gallery; a catalogue without camera
and frame numbers (ATRW train, whose file names are shuffled) needs another way to
find them. This one is model-independent, so a better model cannot move the
exclusions:

- each photo's *signature* (:func:`image_signature`) is the whole photo (not a box)
  decoded to at most 160 px, then (a) a 16×8 RGB thumbnail, centred and scaled to unit
  length, and (b) the square root of its normalised HSV histogram (8 hue × 4 saturation
  × 4 value bins), each weighted 1/√2. The dot product of two signatures is the mean of
  the thumbnails' correlation (layout, pose, background) and the histograms'
  Bhattacharyya coefficient (lighting, colours of the scene);
- two photos of the *same individual* whose similarity is at least the threshold are
  linked, and the connected components of the links are the near-duplicate groups
  (:func:`near_duplicate_groups`). Photos of different individuals are never grouped.

The threshold, :data:`NEAR_DUPLICATE_THRESHOLD` = 0.88, was chosen on ATRW train
(1,887 photos, 107 entities) by looking at real pairs: pairs above 0.86 are consecutive
frames (same pose to within a step, same light); pairs of 0.6–0.85 are mostly the same
walk a few steps apart or the same enclosure another time; at 0.88 a photo is linked to
3.7 photos of its own entity on average, as many as the official test protocol's ±3
frames exclude per query on the ATRW test set (3.6), while only 169 of 1.76 M pairs of
*different* entities (0.01 %) reach it. Linking is transitive, so a run of consecutive
frames forms one group even where its ends differ more (at 0.88, 9.6 images per query
on average, median 3).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from reid.data.records import ImageRecord
from reid.images import ImageSource, load_image

#: Similarity from which two photos of one individual are near-duplicates (see above).
NEAR_DUPLICATE_THRESHOLD = 0.88
#: Longer side of the decoded photo, and the thumbnail's (width, height).
DECODE_SIDE = 160
THUMBNAIL_SIZE = (16, 8)
#: Bins of the HSV histogram: hue, saturation, value.
HISTOGRAM_BINS = (8, 4, 4)


def image_signature(source: ImageSource | np.ndarray) -> np.ndarray:
    """The unit-length signature of a photo (a path, encoded bytes or an RGB array);
    see the module text. Photos are compared by the dot product of their signatures."""
    if isinstance(source, np.ndarray):
        image = Image.fromarray(source).convert("RGB")
        image.thumbnail((DECODE_SIDE, DECODE_SIDE), Image.BILINEAR)
    else:
        image = Image.fromarray(load_image(source, max_side=DECODE_SIDE))
    thumb = np.asarray(image.resize(THUMBNAIL_SIZE, Image.BILINEAR), np.float64).ravel()
    thumb = thumb - thumb.mean()
    norm = np.linalg.norm(thumb)
    thumb = thumb / norm if norm > 0 else thumb
    hsv = np.asarray(image.convert("HSV"), np.int64).reshape(-1, 3)
    step = 256 // np.array(HISTOGRAM_BINS)
    cells = hsv // step
    flat = np.ravel_multi_index(cells.T, HISTOGRAM_BINS)
    hist = np.bincount(flat, minlength=int(np.prod(HISTOGRAM_BINS))).astype(np.float64)
    hist = np.sqrt(hist / max(hist.sum(), 1.0))
    return (np.concatenate([thumb, hist]) / np.sqrt(2.0)).astype(np.float32)


def signatures(
    records: Sequence[ImageRecord],
    workers: int = 2,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """The signatures of the records' whole photos (N × D, decoded in ``workers``
    threads), in record order."""

    def one(record: ImageRecord) -> np.ndarray:
        s = image_signature(record.path)
        if progress:
            progress(1)
        return s

    if not records:
        return np.zeros((0, len(image_signature(np.zeros((8, 16, 3), np.uint8)))), np.float32)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        return np.stack(list(pool.map(one, records)))


def link_groups(linked: np.ndarray) -> np.ndarray:
    """Connected components of a symmetric N × N boolean link matrix: a group number
    per item, numbered in order of first appearance (0, 1, ...)."""
    n = len(linked)
    group = np.full(n, -1, np.int64)
    count = 0
    for start in range(n):
        if group[start] >= 0:
            continue
        group[start] = count
        stack = [start]
        while stack:
            k = stack.pop()
            for j in np.flatnonzero(linked[k] & (group < 0)):
                group[j] = count
                stack.append(int(j))
        count += 1
    return group


def near_duplicate_groups(
    records: Sequence[ImageRecord],
    threshold: float = NEAR_DUPLICATE_THRESHOLD,
    *,
    signature: np.ndarray | None = None,
    workers: int = 2,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """A near-duplicate group number per record: photos of one individual linked,
    directly or through others, by a signature similarity >= ``threshold``.

    Unidentified records (``individual_id`` None) are each a group of their own.
    ``signature`` (N × D) reuses signatures already computed by :func:`signatures`.
    """
    sig = signatures(records, workers, progress) if signature is None else np.asarray(signature)
    if len(sig) != len(records):
        raise ValueError(f"{len(sig)} signatures for {len(records)} records")
    ids = np.array([r.individual_id or f"\0unidentified-{i}" for i, r in enumerate(records)])
    same = ids[:, None] == ids[None, :]
    linked = same & (sig @ sig.T >= threshold)
    return link_groups(linked)


def same_group(groups: np.ndarray) -> np.ndarray:
    """N × N: True where two *different* records are in one near-duplicate group."""
    g = np.asarray(groups)
    mask = g[:, None] == g[None, :]
    np.fill_diagonal(mask, False)
    return mask
