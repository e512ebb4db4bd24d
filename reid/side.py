"""Flank side from the photo: which way the animal faces, with a probability.

Camera-trap photos arrive without a side label. In a side view an animal shows the flank
it faces: head to the left of the photo, the left flank (the convention of ATRW's
keypoints, of nyala-dev and of :mod:`reid.synthetic`). A :class:`SideHead` is a logistic
regression on the embedding network's own feature map, pooled separately over its left
and right halves (the global embedding pools position away; the halves keep where the
head is). It costs no second forward pass: the matcher reads it off the feature map that
the embedding is computed from.

It is fitted after training on photos of known side and their mirror images with the
opposite label (a mirrored left-facing animal faces right), so the two classes are
balanced by construction, and stored in the release beside the weights
(``side_head.safetensors``, SHA-256 in the manifest). ``reid side fit`` fits it,
``reid side eval`` measures it (on ATRW, against each photo's keypoints).

The matcher searches only the decided side's gallery when ``P(side) >=`` its threshold
(:data:`DEFAULT_SIDE_THRESHOLD`), both sides otherwise, and reports which.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reid.errors import ReidError
from reid.heads import load_state, read_state, release_file, save_state, write_to_release

__all__ = [
    "DEFAULT_SIDE_THRESHOLD",
    "SIDE_FILE",
    "SideHead",
    "decide_side",
    "fit_side_head",
    "half_pooled",
]

SIDE_FILE = "side_head.safetensors"
#: P(side) from which a query searches only that side's gallery
DEFAULT_SIDE_THRESHOLD = 0.95


def half_pooled(features: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) feature map -> (B, 2C): the mean over its left half, then its right
    half (the middle column of an odd width is in neither)."""
    w = features.shape[-1]
    half = max(1, w // 2)
    left = features[..., :half].float().mean(dim=(2, 3))
    right = features[..., w - half :].float().mean(dim=(2, 3))
    return torch.cat([left, right], dim=1)


class SideHead(nn.Module):
    """Feature map -> P(left flank): standardise the half-pooled features, then a linear
    logit."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = int(num_features)
        self.register_buffer("mean", torch.zeros(2 * self.num_features))
        self.register_buffer("scale", torch.ones(2 * self.num_features))
        self.linear = nn.Linear(2 * self.num_features, 1)

    def logit_of_pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.linear((pooled - self.mean) / self.scale).squeeze(1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B,) P(left)."""
        return torch.sigmoid(self.logit_of_pooled(half_pooled(features)))

    def save(self, path: Path) -> None:
        save_state(self, path)

    @classmethod
    def load(cls, path: Path, num_features: int) -> SideHead:
        return load_state(cls(num_features), read_state(path), path, "side head", num_features)


def fit_side_head(
    pooled: np.ndarray, left: np.ndarray, l2: float = 1e-2, max_iter: int = 200
) -> SideHead:
    """A :class:`SideHead` fitted by L-BFGS on half-pooled features (N, 2C) with labels
    ``left`` (N,) in {0, 1}: L2-regularised logistic regression on standardised features.

    Mirrored photos are not added here: :func:`pooled_with_mirrors` gives them.
    """
    x = torch.as_tensor(np.asarray(pooled, np.float32))
    y = torch.as_tensor(np.asarray(left, np.float32))
    if x.ndim != 2 or x.shape[1] % 2 or len(x) != len(y):
        raise ReidError(f"side head: features {tuple(x.shape)} and labels {tuple(y.shape)}")
    if len(torch.unique(y)) < 2:
        raise ReidError("side head: the photos must show both sides (add their mirrors)")
    head = SideHead(x.shape[1] // 2)
    mean = x.mean(0)
    scale = x.std(0).clamp_min(1e-6)
    head.mean.copy_(mean)
    head.scale.copy_(scale)
    nn.init.zeros_(head.linear.weight)
    nn.init.zeros_(head.linear.bias)
    opt = torch.optim.LBFGS(head.linear.parameters(), lr=1.0, max_iter=max_iter,
                            line_search_fn="strong_wolfe")  # fmt: skip

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = head.logit_of_pooled(x)
        loss = F.binary_cross_entropy_with_logits(logits, y)
        loss = loss + l2 * head.linear.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return head.eval()


def decide_side(p_left: float, threshold: float = DEFAULT_SIDE_THRESHOLD) -> str | None:
    """``left`` / ``right`` when ``P(that side) >= threshold``, else None (search both)."""
    if not 0.5 <= threshold <= 1.0:
        raise ReidError(f"side threshold {threshold} is not in 0.5..1")
    if threshold >= 1.0:  # float32 sigmoids reach exactly 1.0: 1 means never decide
        return None
    if p_left >= threshold:
        return "left"
    if 1.0 - p_left >= threshold:
        return "right"
    return None


def side_accuracy(p_left: Sequence[float], truth: Sequence[str]) -> dict:
    """Accuracy of the most likely side against ``truth`` (left/right), and the share of
    photos decided at the default threshold with their accuracy."""
    p = np.asarray(p_left, np.float64)
    t = np.asarray([s == "left" for s in truth])
    if len(p) == 0:
        return {"photos": 0}
    right = (p >= 0.5) == t
    decided = np.maximum(p, 1 - p) >= DEFAULT_SIDE_THRESHOLD
    return {
        "photos": int(len(p)),
        "accuracy": float(right.mean()),
        "decided_share": float(decided.mean()),
        "decided_accuracy": float(right[decided].mean()) if decided.any() else None,
    }


# ------------------------------------------------------------------ with a model


def pooled_records(
    model,
    records: Sequence,
    batch_size: int = 32,
    workers: int = 2,
    device: str = "cpu",
    progress=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Half-pooled feature maps of ``records`` (catalogue records, decoded and letterboxed
    as for embedding) and of their mirror images: two (N, 2C) float32 arrays."""
    from torch.utils.data import DataLoader

    from reid.embed import RecordDataset, inference
    from reid.images import ImageError

    cfg = model.config
    n = len(records)
    plain = np.empty((n, 2 * model.num_features), np.float32)
    mirror = np.empty_like(plain)
    if not n:
        return plain, mirror
    dataset = RecordDataset(list(records), cfg.input_size, cfg.mean, cfg.std)
    with inference(model, device) as dev:
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False,
                            num_workers=min(workers, -(-n // batch_size)))  # fmt: skip
        for batch, index, errors in loader:
            bad = [e for e in errors if e]
            if bad:
                raise ImageError(bad[0])
            for out, x in ((plain, batch), (mirror, batch.flip(-1))):
                x = x.to(dev).contiguous(memory_format=torch.channels_last)
                out[index.numpy()] = half_pooled(model.forward_features(x)).cpu().numpy()
            if progress:
                progress(len(index))
    return plain, mirror


def attach(model, head: SideHead | None) -> None:
    """Give ``model`` its side head, outside its registered modules (the embedding
    network's state dict, fingerprint and training are untouched)."""
    object.__setattr__(model, "side_head", head)


def head_of(model) -> SideHead | None:
    return getattr(model, "side_head", None)


def side_probabilities(model, features: torch.Tensor) -> np.ndarray | None:
    """P(left) per image from a feature map, or None when the model has no side head."""
    head = head_of(model)
    if head is None:
        return None
    head = head.to(features.device)
    return head(features).float().cpu().numpy()


def save_to_release(folder: Path, head: SideHead, info: dict) -> dict:
    """Write ``head`` into a release folder and record it (with ``info``: what it was
    fitted on, its measured accuracy) in the manifest; returns the new manifest."""
    return write_to_release(folder, "side_head", SIDE_FILE, head, info)


def load_from_release(folder: Path, manifest: dict, num_features: int) -> SideHead | None:
    """The release's side head (checked against its SHA-256), or None if it has none."""
    path = release_file(folder, manifest, "side_head", SIDE_FILE, "side head",
                        "with reid side fit", weights_recorded=False)  # fmt: skip
    return None if path is None else SideHead.load(path, num_features)
