"""Metric-learning losses on L2-normalised embeddings.

- :class:`SubCenterArcFace` (Deng et al., ECCV 2020): each class has ``k`` sub-centres on
  the unit sphere; a sample's cosine to a class is its best sub-centre's; the target
  class's angle gets an additive margin ``m`` and all cosines are scaled by ``s``. The
  class weights live here, in the loss, not in the model: enrolling a new individual
  never touches the network, and fine-tuning on a new catalogue starts a fresh head.
- :class:`BatchHardTriplet` (Hermans et al., 2017): per anchor, the farthest positive and
  the nearest negative in the batch, hinge with ``margin`` on Euclidean distances.
- :class:`ReidLoss`: their weighted sum, returning the parts for logging.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BatchHardTriplet", "ReidLoss", "SubCenterArcFace"]


class SubCenterArcFace(nn.Module):
    """Sub-centre ArcFace: ``num_classes × subcenters`` unit vectors of ``embedding_dim``."""

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        subcenters: int = 3,
        scale: float = 30.0,
        margin: float = 0.3,
    ) -> None:
        super().__init__()
        if num_classes < 1 or subcenters < 1:
            raise ValueError(f"num_classes {num_classes} and subcenters {subcenters} must be >= 1")
        self.num_classes = int(num_classes)
        self.subcenters = int(subcenters)
        self.scale = float(scale)
        self.margin = float(margin)
        self.weight = nn.Parameter(torch.empty(self.num_classes * self.subcenters, embedding_dim))
        nn.init.normal_(self.weight, std=0.01)

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(B, C) cosine of each sample to each class (its nearest sub-centre)."""
        cos = F.normalize(embeddings.float(), dim=1) @ F.normalize(self.weight.float(), dim=1).T
        return cos.view(-1, self.num_classes, self.subcenters).amax(dim=2)

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Scaled logits with the additive angular margin on each sample's own class.

        Target logit ``s·cos(θ + m)``; where ``θ + m`` would pass π (cos no longer
        decreasing) it is ``s·(cos θ − m·sin m)`` instead, as in insightface.
        """
        cos = self.cosine(embeddings).clamp(-1.0, 1.0)
        target = cos.gather(1, labels.view(-1, 1))
        sin = (1.0 - target.square()).clamp_min(0.0).sqrt()
        m = self.margin
        with_margin = target * math.cos(m) - sin * math.sin(m)
        with_margin = torch.where(
            target > math.cos(math.pi - m), with_margin, target - m * math.sin(m)
        )
        out = cos.scatter(1, labels.view(-1, 1), with_margin)
        return out * self.scale

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(embeddings, labels), labels)

    @torch.no_grad()
    def imprint(
        self, embeddings: torch.Tensor, labels: torch.Tensor, jitter: float = 0.05, seed: int = 0
    ) -> int:
        """Set each class's sub-centres to the normalised mean of its ``embeddings``.

        The sub-centres of a class start as that mean plus a little seeded noise
        (``jitter``, relative to the unit mean) so that they can drift apart to different
        modes (day and night shots, say). Classes without an embedding keep their weights.
        Returns the number of classes imprinted.
        """
        x = F.normalize(embeddings.float(), dim=1)
        labels = labels.long()
        if len(x) != len(labels):
            raise ValueError(f"{len(x)} embeddings but {len(labels)} labels")
        if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes})")
        sums = torch.zeros(self.num_classes, x.shape[1], dtype=x.dtype, device=x.device)
        sums.index_add_(0, labels, x)
        present = torch.bincount(labels, minlength=self.num_classes) > 0
        means = F.normalize(sums, dim=1)
        g = torch.Generator(device="cpu").manual_seed(seed)
        noise = torch.randn(self.num_classes, self.subcenters, x.shape[1], generator=g)
        centres = means[:, None, :] + jitter * noise.to(x.device) / x.shape[1] ** 0.5
        centres = F.normalize(centres, dim=2).reshape(-1, x.shape[1])
        keep = present.repeat_interleave(self.subcenters)
        w = self.weight.data
        w[keep] = centres[keep].to(w.dtype)
        return int(present.sum())


class BatchHardTriplet(nn.Module):
    """Batch-hard triplet loss on Euclidean distances between the given embeddings.

    Anchors without a positive (another sample of their class) or without a negative in
    the batch are left out of the mean; a batch with no usable anchor gives 0.
    """

    def __init__(self, margin: float = 0.3) -> None:
        super().__init__()
        self.margin = float(margin)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = embeddings.float()
        sq = x.square().sum(dim=1)
        d2 = sq[:, None] + sq[None, :] - 2.0 * x @ x.T
        dist = d2.clamp_min(1e-12).sqrt()  # clamp: the gradient of sqrt at 0 is infinite
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        pos = same & ~eye
        neg = ~same
        hardest_pos = dist.masked_fill(~pos, float("-inf")).amax(dim=1)
        hardest_neg = dist.masked_fill(~neg, float("inf")).amin(dim=1)
        usable = pos.any(dim=1) & neg.any(dim=1)
        if not usable.any():
            return x.sum() * 0.0
        hinge = F.relu(hardest_pos - hardest_neg + self.margin)
        return hinge[usable].mean()


class ReidLoss(nn.Module):
    """``arcface_weight × arcface + triplet_weight × triplet``, and the parts for logging."""

    def __init__(
        self,
        arcface: SubCenterArcFace,
        triplet: BatchHardTriplet,
        arcface_weight: float = 1.0,
        triplet_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.arcface = arcface
        self.triplet = triplet
        self.arcface_weight = float(arcface_weight)
        self.triplet_weight = float(triplet_weight)

    def forward(
        self, embeddings: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        # Both parts are always computed (and logged); a weight of 0 only drops it from the
        # sum, so every parameter takes part in each step (DistributedDataParallel needs it).
        parts = {
            "arcface": self.arcface(embeddings, labels),
            "triplet": self.triplet(embeddings, labels),
        }
        total = self.arcface_weight * parts["arcface"] + self.triplet_weight * parts["triplet"]
        return total, parts
