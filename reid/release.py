"""Clean model releases: ``model.safetensors`` + ``manifest.json`` (+ a model card).

A release is what ships and what matching loads; it is not a training checkpoint (no
optimiser, no loss weights, no RNG state: resumable state belongs to ``training/``).
The manifest describes the architecture (so the network can be rebuilt without the
code that trained it), the preprocessing, the training data and metrics, and the
SHA-256 of the weights file. :func:`load_release` refuses weights whose hash differs
from the manifest and tensors that do not fit the architecture the manifest describes.
The SHA-256 is the model's fingerprint: gallery indexes record it, so embeddings made by
one model are never searched with another.

Weights are safetensors (no pickle), and a release always builds its network with
``pretrained=None``: loading one never needs the ImageNet weights package.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import timm
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from reid.errors import ReidError
from reid.licence import LICENSE_FILE, Licence
from reid.model import EmbeddingModel, ModelConfig, fuse_batchnorm
from reid.paths import atomic_write

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
MANIFEST_FILE = "manifest.json"
CARD_FILE = "README.md"
#: Manifest keys that together rebuild the :class:`ModelConfig`.
ARCHITECTURE_KEYS: tuple[str, ...] = (
    "backbone",
    "embedding_dim",
    "input_size",
    "pooling",
    "mean",
    "std",
)
REQUIRED_KEYS: tuple[str, ...] = ("format_version", "name", *ARCHITECTURE_KEYS, "sha256")


def parse_size(text: str, what: str = "size") -> tuple[int, int]:
    """``"192x384"`` -> (192, 384): height x width in pixels, both positive."""
    parts = str(text).lower().replace("×", "x").split("x")
    try:
        h, w = (int(p) for p in parts)
    except ValueError:
        raise ReidError(f"{what} {text!r} is not HEIGHTxWIDTH, e.g. 192x384") from None
    if h < 1 or w < 1:
        raise ReidError(f"{what} {text!r}: height and width must be positive")
    return h, w


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_release(
    model: EmbeddingModel,
    out_dir: Path,
    *,
    name: str,
    training_data: str,
    metrics: dict,
    extra: dict | None = None,
    input_size: tuple[int, int] | None = None,
    licence: Licence | None = None,
) -> Path:
    """Write ``out_dir/model.safetensors``, ``manifest.json`` and a ``README.md`` model
    card; returns ``out_dir``. Existing files of a release there are replaced.

    ``licence``: the terms the weights inherit (:mod:`reid.licence`), written to the
    manifest and the card and in full to ``LICENSE``; None removes a stale ``LICENSE``.

    ``input_size`` (H, W) is the size images are embedded at, when it is not the size
    the model was trained at (``model.config.input_size``, kept as ``train_input_size``):
    random crops in training enlarge the animal, so a model often matches best when
    served somewhat larger than it was trained (FixRes). GeM pooling takes any size."""
    if not name or not name.strip():
        raise ReidError("a release needs a name")
    train_size = list(model.config.input_size)
    # ModelConfig checks the size, before anything is written
    cfg = replace(model.config, pretrained=None, input_size=input_size or train_size).to_dict()
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ReidError(f"cannot create release folder {out_dir}: {e.strerror or e}") from None
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    weights = out_dir / WEIGHTS_FILE
    _atomic_write(weights, lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"}))
    manifest = {
        "format_version": FORMAT_VERSION,
        "name": name.strip(),
        **{k: cfg[k] for k in ARCHITECTURE_KEYS},
        "train_input_size": train_size,
        "training_data": training_data,
        "metrics": _jsonable(metrics),
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "sha256": sha256_of(weights),
        "weights_file": WEIGHTS_FILE,
        "torch_version": torch.__version__,
        "timm_version": timm.__version__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "extra": _jsonable(extra or {}),
    }
    if licence is not None:
        manifest["licence"] = licence.summary
        text_of = licence.text if licence.text.endswith("\n") else licence.text + "\n"
        _atomic_write(out_dir / LICENSE_FILE, lambda tmp: tmp.write_text(text_of, "utf-8"))
    else:
        (out_dir / LICENSE_FILE).unlink(missing_ok=True)
    text = json.dumps(manifest, indent=2) + "\n"
    _atomic_write(out_dir / MANIFEST_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    card = model_card(manifest)
    _atomic_write(out_dir / CARD_FILE, lambda tmp: tmp.write_text(card, encoding="utf-8"))
    return out_dir


def read_manifest(path: Path) -> dict:
    """The validated manifest of the release folder ``path`` (or of its manifest file)."""
    folder = release_folder(path)
    file = folder / MANIFEST_FILE
    if not file.is_file():
        raise ReidError(
            f"{folder}: no {MANIFEST_FILE}: not a model release (a release folder holds "
            f"{WEIGHTS_FILE} and {MANIFEST_FILE}, as written by reid export)"
        )
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ReidError(f"{file}: not a readable JSON manifest: {e}") from None
    if not isinstance(manifest, dict):
        raise ReidError(f"{file}: the manifest is not a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise ReidError(f"{file}: manifest lacks {', '.join(missing)}")
    if manifest["format_version"] != FORMAT_VERSION:
        raise ReidError(
            f"{file}: release format_version {manifest['format_version']!r} is not supported "
            f"(this version reads {FORMAT_VERSION})"
        )
    sha = manifest["sha256"]
    if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
        raise ReidError(f"{file}: sha256 {sha!r} is not a SHA-256 hex digest")
    return manifest


def config_from_manifest(manifest: dict) -> ModelConfig:
    """The network a manifest describes, with ``pretrained=None``."""
    try:
        return ModelConfig.from_dict(
            {**{k: manifest[k] for k in ARCHITECTURE_KEYS}, "pretrained": None}
        )
    except ReidError as e:
        raise ReidError(f"release {manifest.get('name')!r}: {e}") from None


def load_release(
    path: Path, device: str | torch.device = "cpu", for_inference: bool = True
) -> tuple[EmbeddingModel, dict]:
    """Load a release folder: check its manifest, the weights' SHA-256 and that every
    tensor fits the manifest's architecture. Returns the model in eval mode and the
    manifest. ``for_inference`` (the default) folds the batch norms into the convolutions
    (:func:`reid.model.fuse_batchnorm`: same embeddings, faster); pass False for a model
    to train further (``reid train --init``)."""
    folder = release_folder(path)
    manifest = read_manifest(folder)
    weights = folder / manifest.get("weights_file", WEIGHTS_FILE)
    if not weights.is_file():
        raise ReidError(f"{folder}: weights file {weights.name} is missing")
    actual = sha256_of(weights)
    if actual != manifest["sha256"]:
        raise ReidError(
            f"{weights}: SHA-256 mismatch: the manifest expects {manifest['sha256']}, the "
            f"file has {actual}; it is corrupt or was modified: refusing to load it"
        )
    config = config_from_manifest(manifest)
    model = EmbeddingModel(config)
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as e:
        raise ReidError(f"{weights}: not readable safetensors: {e}") from None
    check_state_dict(model, state, f"{weights}")
    model.load_state_dict(state, strict=True)
    model = model.to(device).eval()
    if for_inference:
        model = fuse_batchnorm(model)
    from reid.side import attach, load_from_release

    head = load_from_release(folder, manifest, model.num_features)
    attach(model, None if head is None else head.to(device))
    from reid import boxhead

    flank = boxhead.load_from_release(folder, manifest, model.num_features)
    boxhead.attach(model, None if flank is None else flank.to(device))
    return model, manifest


def check_state_dict(model: EmbeddingModel, state: dict, source: str) -> None:
    """Refuse ``state`` unless its keys and shapes are exactly the model's."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if not (missing or unexpected or wrong):
        return
    c = model.config
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", wrong)):
        if items:
            shown = ", ".join(items[:3]) + (f" and {len(items) - 3} more" if len(items) > 3 else "")
            parts.append(f"{label}: {shown}")
    raise ReidError(
        f"{source}: tensors do not fit the architecture {c.backbone}, "
        f"embedding_dim {c.embedding_dim}, pooling {c.pooling}: " + "; ".join(parts)
    )


def model_fingerprint(manifest: dict) -> str:
    """The identity of a released model: the SHA-256 of its weights file, followed by
    ``@HxW`` when it embeds at another size than it was trained at (the same weights
    served at two sizes give different vectors, which must not share an index)."""
    sha = str(manifest["sha256"])
    if trained_elsewhere(manifest) is None:
        return sha
    h, w = manifest["input_size"]
    return f"{sha}@{h}x{w}"


def trained_elsewhere(manifest: dict) -> list[int] | None:
    """The size (H, W) the release was trained at when it is served at another one;
    None when it is served at its training size (or predates ``train_input_size``)."""
    trained = manifest.get("train_input_size")
    if trained is None or [int(v) for v in trained] == [int(v) for v in manifest["input_size"]]:
        return None
    return [int(v) for v in trained]


def release_folder(path: Path) -> Path:
    path = Path(path)
    if path.is_file() and path.name in (MANIFEST_FILE, WEIGHTS_FILE):
        return path.parent
    if not path.exists():
        raise ReidError(f"model release {path} does not exist")
    if not path.is_dir():
        raise ReidError(f"model release {path} is not a folder")
    return path


def read_checkpoint(path: Path) -> object:
    """Read a torch checkpoint file as plain data (``weights_only=True``), with one-line
    errors for a missing or unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise ReidError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ReidError(f"{path}: not a readable training checkpoint: {_one_line(e)}") from None


def load_checkpoint_model(path: Path) -> tuple[EmbeddingModel, dict]:
    """Rebuild the model from a training checkpoint ``{"model": state_dict, "config":
    {"model": ModelConfig as dict, ...}, "metrics": {...}, ...}``; returns it (eval mode)
    and the whole checkpoint. Loaded with ``weights_only=True``: plain data only."""
    path = Path(path)
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise ReidError(f"{path}: not a training checkpoint (needs 'model' and 'config' entries)")
    config = ckpt["config"]
    model_cfg = config.get("model") if isinstance(config, dict) else None
    if not isinstance(model_cfg, dict):
        raise ReidError(f"{path}: checkpoint config has no 'model' section")
    config = replace(ModelConfig.from_dict(model_cfg), pretrained=None)
    model = EmbeddingModel(config)
    state = {_strip_prefixes(k): v for k, v in ckpt["model"].items()}
    check_state_dict(model, state, str(path))
    model.load_state_dict(state, strict=True)
    return model.eval(), ckpt


#: What :func:`blend_weights` can average: every tensor, or the backbone's only (and
#: ``backbone:N``, the backbone from its block N on: see :func:`blend_keys`).
BLEND_PARTS: tuple[str, ...] = ("all", "backbone", "backbone:N")


def blend_keys(keys, part: str) -> list[str]:
    """The state-dict keys of ``part``: ``all``; ``backbone`` (``backbone.*``);
    ``backbone:N``: the backbone's stages ``blocks.N`` and later and what follows the
    stages (timm EfficientNets: the last 1x1 convolution ``conv_head`` and its batch norm
    ``bn2``), not the stem (``conv_stem``, ``bn1``) nor earlier stages; with N past the
    last stage, only what follows them. On v0.14 the late stages are where the ImageNet
    features that help unseen tigers live, and the synthetic leopards too (BENCHMARKS.md)."""
    if part == "all":
        return list(keys)
    if part == "backbone":
        return [k for k in keys if k.startswith("backbone.")]
    head, _, n = part.partition(":")
    if head != "backbone" or not n.isdigit():
        raise ReidError(f"blend part {part!r} is not one of {', '.join(BLEND_PARTS)}")
    first = int(n)
    names = {k.split(".")[1] for k in keys if k.startswith("backbone.")}
    if "blocks" not in names or not names <= {"conv_stem", "bn1", "blocks", "conv_head", "bn2"}:
        raise ReidError(
            f"blend part {part!r} needs an EfficientNet-style backbone (conv_stem, bn1, "
            f"blocks.N, conv_head, bn2); this one has {', '.join(sorted(names))}: "
            "use --part backbone or all"
        )
    chosen = []
    for k in keys:
        if not k.startswith("backbone."):
            continue
        rest = k[len("backbone."):]
        if rest.startswith("blocks."):
            if int(rest.split(".")[1]) >= first:
                chosen.append(k)
        elif rest.startswith(("conv_head.", "bn2.")):
            chosen.append(k)
    return chosen


def blend_weights(
    model: EmbeddingModel, other: EmbeddingModel, weight: float, part: str = "all"
) -> None:
    """Set ``model``'s weights to ``weight`` × its own + (1 − ``weight``) × ``other``'s, in
    place (weight-space ensembling of a fine-tuned model with the model it started from,
    WiSE-FT: Wortsman et al., CVPR 2022).

    ``part`` chooses the tensors averaged: ``"all"`` (both models must then have the same
    tensor names and shapes), ``"backbone"`` (only ``backbone.*``, which ``other`` must
    have with the same shapes; ``model``'s pooling and projection are kept) or
    ``"backbone:N"`` (the backbone from its stage N on, :func:`blend_keys`). Integer
    buffers (batch-norm step counts) keep ``model``'s values."""
    if not 0.0 <= weight <= 1.0:
        raise ReidError(f"blend weight {weight} is not in 0..1")
    mine, theirs = model.state_dict(), other.state_dict()
    chosen = blend_keys(mine, part)
    differ = [k for k in chosen if k not in theirs or theirs[k].shape != mine[k].shape]
    if part == "all":
        differ += [k for k in theirs if k not in mine]
    if differ or not chosen:
        raise ReidError("cannot blend models of different architectures (tensor names or "
                        f"shapes differ: {', '.join(differ[:3]) or 'no tensors'})")  # fmt: skip
    blended = dict(mine)
    for k in chosen:
        v = mine[k]
        if v.is_floating_point():
            blended[k] = weight * v + (1.0 - weight) * theirs[k].to(v.dtype)
    model.load_state_dict(blended, strict=True)


def training_data_of(checkpoint: dict) -> str:
    """A one-line description of what a training checkpoint was trained on, from its
    ``training_data`` entry or its config's ``data`` section."""
    if isinstance(checkpoint.get("training_data"), str):
        return checkpoint["training_data"]
    config = checkpoint.get("config")
    data = config.get("data") if isinstance(config, dict) else None
    if isinstance(data, str):
        return data
    if not isinstance(data, dict):
        return "unknown"
    sources = [f"{k} {data[k]}" for k in ("synthetic", "manifest") if data.get(k)]
    split = [f"{k} {data[k]}" for k in ("train_ratio", "split_seed") if k in data]
    text = ", ".join(sources) or "unknown"
    return f"{text} ({', '.join(split)})" if split else text


def model_card(manifest: dict) -> str:
    """A short human-readable model card from a manifest."""
    metrics = manifest.get("metrics") or {}
    n = manifest.get("parameters")
    params = f"{n:,}" if isinstance(n, int) else "?"
    lines = [
        f"# {manifest['name']}",
        "",
        "bigcat-reid embedding model: flank photo -> L2-normalised embedding; compare with",
        "cosine similarity, only within one species and one flank side.",
        "",
        "| | |",
        "| --- | --- |",
        f"| backbone | {manifest['backbone']} |",
        f"| input (H x W) | {manifest['input_size'][0]} x {manifest['input_size'][1]}, "
        f"letterboxed{_trained_at(manifest)} |",
        f"| embedding | {manifest['embedding_dim']} dims, {manifest['pooling']} pooling |",
        f"| normalisation | mean {manifest['mean']}, std {manifest['std']} |",
        f"| parameters | {params} |",
        f"| training data | {manifest.get('training_data', '')} |",
        f"| created | {manifest.get('created_at', '')} |",
        f"| SHA-256 ({WEIGHTS_FILE}) | `{manifest['sha256']}` |",
    ]
    if manifest.get("licence"):
        lines.append(f"| licence | {manifest['licence']} |")
    lines.append("")
    if metrics:
        lines += ["## Metrics", "", "| metric | value |", "| --- | --- |"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in metrics.items()]
        lines.append("")
    lines += [
        "Load with `reid.release.load_release(folder)`; it refuses weights whose SHA-256",
        "differs from `manifest.json`, and folds the batch norms into the convolutions for",
        "inference (`for_inference=False` keeps a trainable model).",
        "",
    ]
    return "\n".join(lines)


def _trained_at(manifest: dict) -> str:
    trained = trained_elsewhere(manifest)
    return "" if trained is None else f" (trained at {trained[0]} x {trained[1]})"


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else json.dumps(v)


def _strip_prefixes(key: str) -> str:
    for prefix in ("module.", "_orig_mod."):
        while key.startswith(prefix):
            key = key[len(prefix) :]
    return key


def _jsonable(value):
    """Metrics and extras as plain JSON values (tensors and numpy scalars as numbers)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _jsonable(value.tolist())
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return _jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def _atomic_write(target: Path, write) -> None:
    try:
        atomic_write(target, write)
    except OSError as e:
        raise ReidError(f"cannot write {target}: {e.strerror or e}") from None


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())[:300] or type(e).__name__
