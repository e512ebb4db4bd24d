"""The flank box from the embedding network's own feature map: a small learned head.

:mod:`reid.locate` finds the animal with an ImageNet classifier's class-activation map and
cuts fixed shares off for head and legs. The embedding network already looks at stripes
and flanks; a :class:`FlankHead` reads its feature map (stride 32) and says, for every
cell, how much of it lies on the torso: a two-layer perceptron per cell (standardised
features, ``hidden`` ReLU units, one logit), trained with per-cell soft targets (the
share of the cell inside the torso box) on photos whose torso is known from pose
keypoints (:func:`torso_box`; ATRW training entities only). The probability map is
upsampled to the image, thresholded at ``threshold``, and the bounding box of its largest
connected region is the flank box (:func:`grid_box`), in the image's pixels.

The photo runs whole at ``size`` pixels on the longer side (aspect kept, padded at the
bottom and right to a multiple of 32 with the mean colour), one image at a time, so a
box never depends on other images.

It is stored in the release beside the weights (``flank_head.safetensors``, SHA-256 in
the manifest, tied to the weights it reads by ``weights_sha256``), as the side head
(:mod:`reid.side`) is. ``bench/bench_locate.py`` fits and measures it.

The torso from ATRW's keypoints (:func:`torso_box`): the labelled points among the two
shoulders, the two hips, the tail base and the centre of the back that lie inside the
photo; at least one shoulder and one of hips / tail base must be there, and three points
in all. Their bounding box spans the body from the shoulder joint to the tail base and
from the back to the upper legs; it is grown by ``margin`` (0.1) of its width on every
side (the belly lies below the shoulder and hip joints, the back line above them), made
at least ``min_height`` (0.4) of its width high about its middle, and clipped to the photo.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reid.data.records import BBox
from reid.errors import ReidError
from reid.heads import load_state, read_state, release_file, save_state, write_to_release

__all__ = [
    "FLANK_FILE",
    "FlankHead",
    "coverage_grid",
    "fit_flank_head",
    "grid_box",
    "iou",
    "torso_box",
]

FLANK_FILE = "flank_head.safetensors"
#: longer side of the whole photo as the head's network sees it (pixels)
DEFAULT_SIZE = 320
#: probability from which a cell of the upsampled map counts as flank
DEFAULT_THRESHOLD = 0.5
_STRIDE = 32

#: ATRW keypoint indices (reid.data.atrw.KEYPOINT_NAMES) of the torso
FRONT_POINTS: tuple[int, ...] = (3, 5)  # right, left shoulder
REAR_POINTS: tuple[int, ...] = (7, 10, 13)  # right, left hip, tail (base)
CENTRE_POINT = 14


# ------------------------------------------------------------------ boxes


def iou(a: BBox, b: BBox) -> float:
    """Intersection over union of two (x, y, w, h) boxes; 0 when either has no area."""
    ix = max(0.0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    iy = max(0.0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    inter = ix * iy
    union = max(0.0, a.w) * max(0.0, a.h) + max(0.0, b.w) * max(0.0, b.h) - inter
    return float(inter / union) if union > 0 else 0.0


def torso_box(
    keypoints: np.ndarray,
    image_wh: tuple[float, float] | None = None,
    margin: float = 0.1,
    min_height: float = 0.4,
) -> BBox | None:
    """The torso box of a photo from its ATRW pose keypoints ((15, 3) x, y, visibility),
    or None when they do not give one (see the module text for the definition).

    Points not labelled (visibility 0) or outside the photo (a negative coordinate, or
    beyond ``image_wh`` = (width, height) when given) are ignored; the box is clipped to
    the photo when its size is given, else to non-negative coordinates."""
    kp = np.asarray(keypoints, dtype=np.float64).reshape(-1, 3)
    if len(kp) <= CENTRE_POINT:
        raise ReidError(f"torso box: {len(kp)} keypoints, expected ATRW's 15")
    usable = (kp[:, 2] > 0) & (kp[:, 0] >= 0) & (kp[:, 1] >= 0)
    if image_wh is not None:
        usable &= (kp[:, 0] <= image_wh[0]) & (kp[:, 1] <= image_wh[1])
    front = [i for i in FRONT_POINTS if usable[i]]
    rear = [i for i in REAR_POINTS if usable[i]]
    points = front + rear + ([CENTRE_POINT] if usable[CENTRE_POINT] else [])
    if not front or not rear or len(points) < 3:
        return None
    xy = kp[points, :2]
    (x0, y0), (x1, y1) = xy.min(axis=0), xy.max(axis=0)
    w = x1 - x0
    if w <= 0:
        return None
    x0, x1, y0, y1 = x0 - margin * w, x1 + margin * w, y0 - margin * w, y1 + margin * w
    if y1 - y0 < min_height * w:
        mid, half = (y0 + y1) / 2, min_height * w / 2
        y0, y1 = mid - half, mid + half
    right, bottom = (math.inf, math.inf) if image_wh is None else image_wh
    x0, y0 = max(0.0, x0), max(0.0, y0)
    x1, y1 = min(right, x1), min(bottom, y1)
    if x1 <= x0 or y1 <= y0:
        return None
    return BBox(float(x0), float(y0), float(x1 - x0), float(y1 - y0))


def coverage_grid(box: BBox, grid_hw: tuple[int, int], stride: int = _STRIDE) -> np.ndarray:
    """(gh, gw) share of each ``stride``-pixel cell inside ``box`` (in network-input
    pixels): the head's training target."""
    gh, gw = grid_hw
    edges_x = np.arange(gw + 1, dtype=np.float64) * stride
    edges_y = np.arange(gh + 1, dtype=np.float64) * stride
    cover_x = np.clip(np.minimum(edges_x[1:], box.x + box.w) - np.maximum(edges_x[:-1], box.x),
                      0, stride) / stride  # fmt: skip
    cover_y = np.clip(np.minimum(edges_y[1:], box.y + box.h) - np.maximum(edges_y[:-1], box.y),
                      0, stride) / stride  # fmt: skip
    return np.outer(cover_y, cover_x).astype(np.float32)


def grid_box(
    prob: np.ndarray,
    input_hw: tuple[int, int],
    image_hw: tuple[int, int],
    threshold: float = DEFAULT_THRESHOLD,
) -> BBox:
    """The box, in image pixels, of the largest connected region of the probability map
    ``prob`` (gh, gw; stride 32 over the network input of size ``input_hw``) at or above
    ``threshold`` once upsampled; with no such pixel, of the region at or above half the
    map's maximum (a photo where the head is unsure still gets its likeliest part)."""
    from reid.locate import _pixels

    gh, gw = prob.shape
    full = cv2.resize(prob.astype(np.float32), (gw * _STRIDE, gh * _STRIDE),
                      interpolation=cv2.INTER_LINEAR)[: input_hw[0], : input_hw[1]]  # fmt: skip
    ih, iw = image_hw
    top = float(full.max()) if full.size else 0.0
    if not top > 0:
        return BBox(0.0, 0.0, float(iw), float(ih))
    mask = (full >= min(threshold, top / 2)).astype(np.uint8)
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h = (int(v) for v in stats[best, :4])
    sy, sx = ih / input_hw[0], iw / input_hw[1]
    return _pixels(x * sx, y * sy, (x + w) * sx, (y + h) * sy, iw, ih)


# ------------------------------------------------------------------ the head


class FlankHead(nn.Module):
    """Feature map (B, C, h, w) -> per-cell P(torso) (B, h, w): standardised features, a
    1x1 convolution to ``hidden`` ReLU units, a 1x1 convolution to one logit."""

    def __init__(self, num_features: int, hidden: int = 32) -> None:
        super().__init__()
        self.num_features = int(num_features)
        self.hidden = int(hidden)
        self.register_buffer("mean", torch.zeros(self.num_features))
        self.register_buffer("scale", torch.ones(self.num_features))
        self.reduce = nn.Linear(self.num_features, self.hidden)
        self.out = nn.Linear(self.hidden, 1)

    def logits_of_cells(self, cells: torch.Tensor) -> torch.Tensor:
        """(N, C) feature vectors -> (N,) logits."""
        z = (cells.float() - self.mean) / self.scale
        return self.out(F.relu(self.reduce(z))).squeeze(-1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        b, c, h, w = features.shape
        cells = features.permute(0, 2, 3, 1).reshape(-1, c)
        return torch.sigmoid(self.logits_of_cells(cells)).reshape(b, h, w)

    def save(self, path: Path) -> None:
        save_state(self, path)

    @classmethod
    def load(cls, path: Path, num_features: int) -> FlankHead:
        state = read_state(path)
        hidden = int(state["reduce.weight"].shape[0]) if "reduce.weight" in state else 0
        head = cls(num_features, max(1, hidden))
        return load_state(head, state, path, "flank head", num_features)


def fit_flank_head(
    cells: np.ndarray,
    targets: np.ndarray,
    hidden: int = 32,
    epochs: int = 30,
    batch: int = 4096,
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> FlankHead:
    """A :class:`FlankHead` trained with Adam on feature-map cells (N, C) and their soft
    targets (N,) in 0..1 (binary cross-entropy; the backbone is not involved)."""
    x = torch.as_tensor(np.asarray(cells))
    y = torch.as_tensor(np.asarray(targets, np.float32))
    if x.ndim != 2 or len(x) != len(y) or len(x) == 0:
        raise ReidError(f"flank head: cells {tuple(x.shape)} and targets {tuple(y.shape)}")
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # nn.Linear's initialisation
    head = FlankHead(x.shape[1], hidden)
    sample = x[torch.randperm(len(x), generator=gen)[:50_000]].float()
    head.mean.copy_(sample.mean(0))
    head.scale.copy_(sample.std(0).clamp_min(1e-6))
    opt = torch.optim.Adam([*head.reduce.parameters(), *head.out.parameters()], lr=lr,
                           weight_decay=weight_decay)  # fmt: skip
    steps = epochs * -(-len(x) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    head.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), batch):
            idx = order[start : start + batch]
            loss = F.binary_cross_entropy_with_logits(head.logits_of_cells(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return head.eval()


# ------------------------------------------------------------------ with a model


def fit_input(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` (RGB uint8) resized so its longer side is ``size`` pixels."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ReidError(f"expected an H x W x 3 uint8 RGB image, got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    s = size / max(h, w)
    dsize = (max(1, round(w * s)), max(1, round(h * s)))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, dsize, interpolation=interp)


def feature_map(model, fitted: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """The model's feature map (C, h, w) of one fitted image, padded at the bottom and
    right with the mean colour to a multiple of 32."""
    cfg = model.config
    h, w = fitted.shape[:2]
    ph, pw = -(-h // _STRIDE) * _STRIDE, -(-w // _STRIDE) * _STRIDE
    mean = np.asarray(cfg.mean, np.float32)
    std = np.asarray(cfg.std, np.float32)
    x = np.zeros((ph, pw, 3), np.float32)  # zero = the mean after normalising
    x[:h, :w] = (fitted.astype(np.float32) * np.float32(1 / 255.0) - mean) / std
    batch = torch.from_numpy(x).permute(2, 0, 1)[None].to(device)
    batch = batch.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        return model.forward_features(batch)[0].float()


class FlankBoxer:
    """Whole photos to flank boxes with a model's :class:`FlankHead`."""

    def __init__(
        self,
        model,
        head: FlankHead | None = None,
        size: int = DEFAULT_SIZE,
        threshold: float = DEFAULT_THRESHOLD,
        device: str | torch.device = "cpu",
    ) -> None:
        head = head if head is not None else head_of(model)
        if head is None:
            raise ReidError("this model release has no flank head (flank_head.safetensors)")
        if not 64 <= size <= 1024:
            raise ReidError(f"flank head size {size} is not between 64 and 1024 pixels")
        if not 0 < threshold < 1:
            raise ReidError(f"flank head threshold {threshold} is not between 0 and 1")
        self.model, self.size, self.threshold = model, int(size), float(threshold)
        self.device = torch.device(device)
        self.head = head.to(self.device).eval()

    def probability_map(self, image: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """Per-cell P(torso) (gh, gw) of a whole photo, and the fitted image's (h, w)."""
        fitted = fit_input(image, self.size)
        feats = feature_map(self.model, fitted, self.device)
        with torch.inference_mode():
            prob = self.head(feats[None])[0].cpu().numpy()
        return prob, (int(fitted.shape[0]), int(fitted.shape[1]))

    def box(self, image: np.ndarray) -> BBox:
        """The flank box of one whole photo (RGB uint8), in its pixels."""
        prob, input_hw = self.probability_map(image)
        return grid_box(prob, input_hw, image.shape[:2], self.threshold)

    def boxes(self, images: Sequence[np.ndarray]) -> list[BBox]:
        return [self.box(im) for im in images]

    def locate_records(self, records: Sequence, progress=None) -> list[BBox]:
        """Flank boxes of catalogue records (images decoded upright, full size), as
        :meth:`reid.locate.FlankLocator.locate_records`; ``progress(n)`` after each."""
        from reid.images import load_image

        out = []
        for r in records:
            out.append(self.box(load_image(r.path)))
            if progress:
                progress(1)
        return out


# ------------------------------------------------------------------ in a release


def attach(model, head: FlankHead | None) -> None:
    """Give ``model`` its flank head, outside its registered modules (the embedding
    network's state dict, fingerprint and training are untouched)."""
    object.__setattr__(model, "flank_head", head)


def head_of(model) -> FlankHead | None:
    return getattr(model, "flank_head", None)


def save_to_release(folder: Path, head: FlankHead, info: dict) -> dict:
    """Write ``head`` into a release folder and record it (with ``info``: what it was
    fitted on, its measured IoU) in the manifest; returns the new manifest."""
    return write_to_release(folder, "flank_head", FLANK_FILE, head, info)


def load_from_release(folder: Path, manifest: dict, num_features: int) -> FlankHead | None:
    """The release's flank head (checked against its SHA-256 and the weights it was
    fitted for), or None if it has none."""
    path = release_file(folder, manifest, "flank_head", FLANK_FILE, "flank head",
                        "(bench/bench_locate.py fit)")  # fmt: skip
    return None if path is None else FlankHead.load(path, num_features)


def boxer_of(model, manifest: dict, device: str | torch.device = "cpu") -> FlankBoxer | None:
    """A :class:`FlankBoxer` with the model's flank head at the size and threshold its
    release records, or None when the model has none."""
    head = head_of(model)
    if head is None:
        return None
    entry = manifest.get("flank_head") or {}
    return FlankBoxer(
        model,
        head,
        size=int(entry.get("size", DEFAULT_SIZE)),
        threshold=float(entry.get("threshold", DEFAULT_THRESHOLD)),
        device=device,
    )
