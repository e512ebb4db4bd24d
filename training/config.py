"""The training configuration: typed dataclasses, read from YAML plus ``key=value`` overrides.

A config file holds sections (``data``, ``model``, ``sampler``, ``augment``, ``loss``,
``optim``, ``schedule``, ``eval``, ``run``); every key has a default, so a file only
lists what it changes. Overrides address a key by its dotted name
(``optim.lr=3e-4``, ``model.input_size=32,64``) and are coerced to the field's type;
an unknown key or a value of the wrong type is a :class:`ConfigError` naming the key.
A file may ``extends: BASE.yaml`` another and list only what it changes.

The resolved config (defaults + file + overrides) is written as ``config.yaml`` beside
every checkpoint, and stored as a plain dict in the checkpoint itself.

A resumed run (``reid train --resume RUN key=value ...``) reads ``RUN/config.yaml`` and
applies the overrides on top; :func:`resume_changes` lists what differs from the
config the checkpoint was trained with, and refuses keys that cannot change in the
middle of a run (:data:`FIXED_FOR_A_RUN`: the model, the data source and split, the
number of classes).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from reid.errors import ReidError
from reid.model import ModelConfig

__all__ = [
    "AugmentConfig",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "LossConfig",
    "OptimConfig",
    "RunConfig",
    "SamplerConfig",
    "ScheduleConfig",
    "TrainConfig",
    "FIXED_FOR_A_RUN",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "resume_changes",
    "save_config",
]


class ConfigError(ReidError):
    """A training config names an unknown key or gives a key a value it cannot take."""


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they are split and cached.

    Exactly one of ``manifest`` (any catalogue ``reid.data.load.load_catalogue`` reads)
    and ``synthetic`` (a preset of ``reid.presets``, rendered into ``synthetic_dir`` the
    first time) is set. Individuals are split disjointly: ``train_ratio`` of them (per
    species) train, the others are the held-out individuals every evaluation uses.
    """

    manifest: str | None = None
    synthetic: str | None = None
    synthetic_dir: str | None = None  # default: <data home>/synthetic
    train_ratio: float = 0.8
    split_seed: int = 0
    cache_dir: str | None = None  # decoded-image cache on disk (.npy); None: in memory
    cache_scale: float = 1.15  # cached images are this much larger than the input (crop room)
    workers: int = 2  # decoding threads for the cache, and data-loader processes
    #: Rehearsal: a synthetic preset whose flanks train beside the catalogue (every batch
    #: has sampler.rehearsal_identities of them), so that fine-tuning on one real species
    #: does not erase what the model knew of others (leopards have no real data here).
    #: Its first ``rehearsal_individuals`` individuals per species (None: all) are used;
    #: it is never evaluated on, and its individuals need not be unseen.
    rehearsal: str | None = None
    rehearsal_individuals: int | None = None
    #: an individual none of whose images has a side is one flank of unknown side (ATRW:
    #: each identity is one flank); off, such images do not train (an animal's two flanks
    #: must not share a class)
    unsided_flanks: bool = False


@dataclass(frozen=True)
class SamplerConfig:
    """P×K batches: ``identities`` flanks (individual, side) × ``images`` photos each."""

    identities: int = 16
    images: int = 4
    batches_per_epoch: int | None = None  # default: training images // (P×K), at least 1
    #: flanks per batch drawn from data.rehearsal, on top of ``identities`` from the
    #: catalogue (the default epoch length counts the catalogue's images only)
    rehearsal_identities: int = 0


@dataclass(frozen=True)
class AugmentConfig:
    """Flank-aware augmentation: never a plain horizontal flip (a mirrored flank is a
    different pattern); ``flip_as_new_identity`` adds mirrored flanks as extra classes."""

    crop_scale: tuple[float, float] = (0.75, 1.0)  # area fraction of the random crop
    crop_ratio_jitter: float = 0.1  # crop aspect within ±10 % of the input's (about 2:1)
    rotation: float = 10.0  # degrees, ±
    perspective: float = 0.15  # distortion scale
    perspective_p: float = 0.3
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.2
    hue: float = 0.02
    greyscale_p: float = 0.15  # infrared night shots are grey
    blur_p: float = 0.15  # Gaussian blur
    motion_blur_p: float = 0.15
    erasing_p: float = 0.3  # occlusion by grass, branches, a second animal
    flip_as_new_identity: bool = False


@dataclass(frozen=True)
class LossConfig:
    """``arcface_weight`` × sub-centre ArcFace + ``triplet_weight`` × batch-hard triplet."""

    subcenters: int = 3
    scale: float = 30.0
    margin: float = 0.3
    arcface_weight: float = 1.0
    triplet_weight: float = 1.0
    triplet_margin: float = 0.3
    #: start each class's sub-centres at the mean embedding of its training images
    #: (weight imprinting, Qi et al. 2018) instead of random vectors: with hundreds of
    #: classes each seen once every few dozen steps, random class weights leave the
    #: ArcFace loss flat for epochs; imprinted ones give useful gradients from step one
    imprint: bool = True


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with ``lr`` for the neck and the loss (ArcFace weights) and ``backbone_lr``.

    ``loss_lr`` (None: ``lr``) gives the ArcFace class weights a rate of their own.
    ``freeze_backbone`` trains the neck alone, from feature maps computed once
    (:mod:`training.neck`: minutes on a CPU; no image augmentation, no triplet loss).
    """

    lr: float = 1e-3
    backbone_lr: float = 3e-4
    loss_lr: float | None = None
    freeze_backbone: bool = False
    weight_decay: float = 0.01
    grad_clip: float | None = 5.0  # max gradient norm; None: no clipping


@dataclass(frozen=True)
class ScheduleConfig:
    """Linear warm-up from 0 for ``warmup_epochs``, then cosine down to ``min_lr_ratio``."""

    epochs: int = 30
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01


@dataclass(frozen=True)
class EvalConfig:
    """Held-out evaluation (the ``reid eval`` protocol) every ``every`` epochs and at the end."""

    every: int = 1
    batch_size: int = 64


@dataclass(frozen=True)
class RunConfig:
    out: str = "runs/train"  # run folder: config.yaml, last.pt, best.pt, log.csv, curves.png
    init: str | None = None  # a model release to start from (fine-tuning); None: model.pretrained
    seed: int = 0
    device: str = "auto"  # auto (CUDA when available), cpu, cuda, cuda:1
    amp: Literal["bf16", "fp16", "off"] = "bf16"  # mixed precision, CUDA only
    deterministic: bool = False  # torch.use_deterministic_algorithms (slower on CUDA)
    threads: int | None = None  # torch CPU threads per process; None: torch's default
    progress: bool = True


@dataclass(frozen=True)
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)


# --------------------------------------------------------------------------- dict <-> config


def config_to_dict(cfg: Any) -> dict:
    """Plain nested dict (tuples as lists): YAML- and checkpoint-friendly."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        return v

    return plain(cfg)


def config_from_dict(data: dict, overrides: typing.Sequence[str] = ()) -> TrainConfig:
    """Build a :class:`TrainConfig` from a (partial) nested dict and dotted overrides."""
    if not isinstance(data, dict):
        raise ConfigError(f"a config is a mapping of sections, not a {type(data).__name__}")
    merged = config_to_dict(TrainConfig())
    _merge(merged, data, "")
    given: set[str] = set()
    for item in overrides:
        key, value = _parse_override(item)
        _set(merged, key, value)
        given.add(key)
    # The command line's data source replaces the file's: `data.manifest=X` on the
    # command line means "train on X", whatever synthetic preset the file named.
    named = {k.removeprefix("data.") for k in given if k.startswith("data.")}
    for key in _replaced_sources(named):
        merged["data"][key] = None
    cfg = _build(TrainConfig, merged, "")
    _validate(cfg)
    return cfg


def load_config(path: str | Path | None, overrides: typing.Sequence[str] = ()) -> TrainConfig:
    """Defaults, then the YAML file at ``path`` (if any), then ``overrides`` (``a.b=v``).

    A file may start from another with a top-level ``extends: OTHER.yaml`` (a path
    relative to the file's folder): the other file is read first (itself perhaps
    extending a third), then this file's keys replace its keys one by one. Naming a data
    source (``data.synthetic`` or ``data.manifest``) replaces the one the base file named,
    as on the command line.
    """
    data: dict = {}
    if path is not None:
        data = _read_layered(Path(path), ())
        try:
            return config_from_dict(data, overrides)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
    return config_from_dict(data, overrides)


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config: {e.strerror or e}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config is a mapping of sections")
    return data


def _read_layered(path: Path, chain: tuple[Path, ...]) -> dict:
    """The nested dict of ``path`` with its ``extends`` chain merged underneath."""
    resolved = path.resolve()
    if resolved in chain:
        loop = " -> ".join(str(p.name) for p in (*chain, resolved))
        raise ConfigError(f"{path}: 'extends' goes round in a circle: {loop}")
    data = _read_yaml(path)
    base_name = data.pop("extends", None)
    if base_name is None:
        return data
    if not isinstance(base_name, str) or not base_name.strip():
        raise ConfigError(f"{path}: 'extends' names one config file, e.g. extends: default.yaml")
    base_path = path.parent / base_name
    if not base_path.is_file():
        raise ConfigError(f"{path}: 'extends: {base_name}': no such file {base_path}")
    base = _read_layered(base_path, (*chain, resolved))
    top_data, base_data = data.get("data"), base.get("data")
    if isinstance(top_data, dict) and isinstance(base_data, dict):
        for key in _replaced_sources(top_data):
            base_data.pop(key, None)
    return _overlay(base, data)


def _replaced_sources(named: typing.Collection[str]) -> list[str]:
    """The data sources that a layer naming the ``data`` keys ``named`` replaces: naming
    one source (``synthetic`` or ``manifest``) drops the other from the layers below."""
    sources = ("synthetic", "manifest")
    if not any(k in named for k in sources):
        return []
    return [k for k in sources if k not in named]


def _overlay(base: dict, top: dict) -> dict:
    """``top``'s keys over ``base``'s, section by section (a plain dict merge per level)."""
    out = dict(base)
    for k, v in top.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _overlay(out[k], v)
        else:
            out[k] = v
    return out


def save_config(cfg: TrainConfig, path: str | Path) -> Path:
    """Write the resolved config as YAML (every key, defaults included)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    tmp.replace(path)
    return path


# --------------------------------------------------------------------------- resuming

#: Keys (or whole sections, ending in ".") that a resumed run cannot change: the
#: architecture and its input (the checkpointed weights are for it), the data source and
#: the identity split (the ArcFace classes and the held-out individuals come from them),
#: and what sets the number or shape of the class weights. ``run.init`` only matters when
#: a run starts.
FIXED_FOR_A_RUN: tuple[str, ...] = (
    "model.",
    "data.manifest",
    "data.synthetic",
    "data.rehearsal",
    "data.rehearsal_individuals",
    "data.unsided_flanks",
    "data.train_ratio",
    "data.split_seed",
    "augment.flip_as_new_identity",
    "loss.subcenters",
    "optim.freeze_backbone",
    "optim.loss_lr",
    "run.init",
)


def _flat(tree: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def resume_changes(saved: dict, cfg: TrainConfig) -> list[tuple[str, Any, Any]]:
    """``(key, saved value, new value)`` for every key where ``cfg`` differs from
    ``saved`` (the plain config dict stored in a checkpoint), in config order.

    Raises :class:`ConfigError` naming every changed key of :data:`FIXED_FOR_A_RUN`.
    """
    try:  # fill in keys an older checkpoint lacks, normalise types (tuples, floats)
        old = _flat(config_to_dict(config_from_dict(saved)))
    except ConfigError:
        old = _flat(saved if isinstance(saved, dict) else {})
    new = _flat(config_to_dict(cfg))
    missing = object()
    changes = [(k, old.get(k, missing), v) for k, v in new.items() if old.get(k, missing) != v]
    changes = [(k, None if a is missing else a, b) for k, a, b in changes]
    fixed = [
        (k, a, b)
        for k, a, b in changes
        if any(k == f or (f.endswith(".") and k.startswith(f)) for f in FIXED_FOR_A_RUN)
    ]
    if fixed:
        what = ", ".join(f"{k} ({a!r} -> {b!r})" for k, a, b in fixed)
        raise ConfigError(
            f"{what}: cannot change in the middle of a run (the model, the data source, "
            "the identity split and the number of classes are fixed when a run starts); "
            "start a new run instead (--config ... --out NEW, or --init a release of this "
            "run to fine-tune from it)"
        )
    return changes


# --------------------------------------------------------------------------- internals


def _unknown(key: str, known: typing.Iterable[str]) -> ConfigError:
    known = list(known)
    name = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {key[: len(key) - len(name)]}{close[0]}?" if close else ""
    return ConfigError(f"unknown config key {key!r}{hint} (known here: {', '.join(known)})")


def _merge(into: dict, data: dict, prefix: str) -> None:
    for k, v in data.items():
        key = f"{prefix}{k}"
        if k not in into:
            raise _unknown(key, into)
        if isinstance(into[k], dict):
            if not isinstance(v, dict):
                raise ConfigError(f"config key {key!r} is a section: give it a mapping")
            _merge(into[k], v, key + ".")
        else:
            into[k] = v


def _parse_override(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {item!r} is not of the form section.key=value")
    return key, value.strip()


def _set(tree: dict, key: str, value: str) -> None:
    parts = key.split(".")
    node = tree
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            raise _unknown(".".join(parts[: i + 1]), node if isinstance(node, dict) else [])
        if i == len(parts) - 1:
            if isinstance(node[part], dict):
                raise ConfigError(f"config key {key!r} is a section: set one of its keys")
            node[part] = value
        else:
            node = node[part]


def _build(cls: type, data: dict, prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        key = f"{prefix}{f.name}"
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            kwargs[f.name] = _build(tp, data[f.name], key + ".")
        else:
            kwargs[f.name] = _coerce(data[f.name], tp, key)
    try:
        return cls(**kwargs)
    except (ReidError, TypeError, ValueError) as e:
        raise ConfigError(f"section {prefix.rstrip('.') or 'config'}: {e}") from None


_NONE = {"null", "none", "~", ""}
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _describe(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` (from YAML, or a command-line string) as type ``tp``, or a ConfigError."""

    def bad(why: str = "") -> ConfigError:
        return ConfigError(f"{key}={value!r}: expected {_describe(tp)}{why}")

    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
            if type(None) in args:
                return None
            raise bad()
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError as e:
                errors.append(e)
        raise bad()
    if origin is Literal:
        if value in args:
            return value
        raise bad()
    if origin is tuple:
        items = value
        if isinstance(value, str):
            text = value.strip()
            items = yaml.safe_load(text) if text.startswith("[") else text.split(",")
        if not isinstance(items, list | tuple):
            raise bad()
        variadic = len(args) == 2 and args[1] is Ellipsis
        types_ = [args[0]] * len(items) if variadic else list(args)
        if len(items) != len(types_):
            raise bad(f" ({len(types_)} values, got {len(items)})")
        return tuple(_coerce(v, t, key) for v, t in zip(items, types_, strict=True))
    if value is None:
        raise bad()
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise bad()
    if tp is int:
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip().replace("_", ""))
            except ValueError:
                raise bad() from None
        raise bad()
    if tp is float:
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                raise bad() from None
        raise bad()
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise bad()
    raise ConfigError(f"{key}: no rule to read a {_describe(tp)} (a bug in training/config.py)")


def _validate(cfg: TrainConfig) -> None:
    d = cfg.data
    if (d.manifest is None) == (d.synthetic is None):
        raise ConfigError(
            "set exactly one of data.manifest (a catalogue) and data.synthetic (a preset "
            f"name); got manifest={d.manifest!r}, synthetic={d.synthetic!r}"
        )
    for key in ("synthetic", "rehearsal"):
        if getattr(d, key) is not None:
            from reid.presets import get_preset

            try:
                get_preset(getattr(d, key))
            except ReidError as e:
                raise ConfigError(f"data.{key}: {e}") from None
    if (d.rehearsal is None) != (cfg.sampler.rehearsal_identities == 0):
        raise ConfigError(
            "data.rehearsal and sampler.rehearsal_identities go together: set both "
            f"(got rehearsal={d.rehearsal!r}, "
            f"rehearsal_identities={cfg.sampler.rehearsal_identities})"
        )
    checks = [
        ("data.train_ratio", 0 < d.train_ratio < 1, "within (0, 1)"),
        ("data.cache_scale", d.cache_scale >= 1, ">= 1"),
        ("data.workers", d.workers >= 0, ">= 0"),
        ("sampler.identities", cfg.sampler.identities >= 1, ">= 1"),
        ("sampler.images", cfg.sampler.images >= 1, ">= 1"),
        ("sampler.rehearsal_identities", cfg.sampler.rehearsal_identities >= 0, ">= 0"),
        (
            "data.rehearsal_individuals",
            d.rehearsal_individuals is None or d.rehearsal_individuals >= 1,
            ">= 1 or null",
        ),
        (
            "sampler.batches_per_epoch",
            cfg.sampler.batches_per_epoch is None or cfg.sampler.batches_per_epoch >= 1,
            ">= 1 or null",
        ),
        (
            "augment.crop_scale",
            0 < cfg.augment.crop_scale[0] <= cfg.augment.crop_scale[1] <= 1,
            "0 < low <= high <= 1",
        ),
        ("loss.subcenters", cfg.loss.subcenters >= 1, ">= 1"),
        ("loss.scale", cfg.loss.scale > 0, "> 0"),
        ("loss.margin", 0 <= cfg.loss.margin < 1.5, "within [0, 1.5) radians"),
        ("loss.arcface_weight", cfg.loss.arcface_weight >= 0, ">= 0"),
        ("loss.triplet_weight", cfg.loss.triplet_weight >= 0, ">= 0"),
        ("optim.lr", cfg.optim.lr > 0, "> 0"),
        ("optim.backbone_lr", cfg.optim.backbone_lr >= 0, ">= 0"),
        ("optim.loss_lr", cfg.optim.loss_lr is None or cfg.optim.loss_lr > 0, "> 0 (or null)"),
        ("loss.triplet_weight", not cfg.optim.freeze_backbone or cfg.loss.triplet_weight == 0,
         "0 with optim.freeze_backbone (the neck stage draws uniform batches of feature maps, "
         "not the P x K batches the batch-hard triplet needs)"),
        ("optim.weight_decay", cfg.optim.weight_decay >= 0, ">= 0"),
        ("schedule.epochs", cfg.schedule.epochs >= 1, ">= 1"),
        ("schedule.warmup_epochs", cfg.schedule.warmup_epochs >= 0, ">= 0"),
        ("schedule.min_lr_ratio", 0 <= cfg.schedule.min_lr_ratio <= 1, "within [0, 1]"),
        ("eval.every", cfg.eval.every >= 1, ">= 1"),
        ("eval.batch_size", cfg.eval.batch_size >= 1, ">= 1"),
        ("run.threads", cfg.run.threads is None or cfg.run.threads >= 1, ">= 1 or null"),
    ]
    for key, ok, rule in checks:
        if not ok:
            raise ConfigError(f"{key} must be {rule}")
    for name in ("perspective_p", "greyscale_p", "blur_p", "motion_blur_p", "erasing_p"):
        p = getattr(cfg.augment, name)
        if not 0 <= p <= 1:
            raise ConfigError(f"augment.{name} must be a probability within [0, 1], got {p}")
    if cfg.loss.arcface_weight == 0 and cfg.loss.triplet_weight == 0:
        raise ConfigError("loss.arcface_weight and loss.triplet_weight are both 0")
