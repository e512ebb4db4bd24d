"""Training data: the catalogue, flank identities, a decoded-image cache, the dataset.

- :func:`load_records`: ``data.manifest`` through :func:`reid.data.load.load_catalogue`,
  or ``data.synthetic``: a preset rendered once into ``data.synthetic_dir``.
- :func:`flank_identities`: classes are flanks, (individual, side): the two flanks of an
  animal carry different patterns. Unidentified images do not train. An individual none
  of whose images has a known side is one flank of unknown side only with
  ``data.unsided_flanks`` (ATRW's entities are flanks without a side label; in an animal
  catalogue that would merge two patterns); otherwise, and for an image of unknown side of
  an individual that also has sided images (it could be either flank), it does not train.
- :class:`ImageCache`: decoding JPEGs is the bottleneck on CPU, so every image is decoded
  once, cropped to its box and letterboxed (as :func:`reid.embed.preprocess` does) to
  ``data.cache_scale`` × the input size, leaving room for random crops; kept as one uint8
  array in memory, or as a ``.npy`` memmap in ``data.cache_dir`` keyed by every image's
  path, modification time and size (and the cache geometry), reused by later runs.
- :class:`FlankDataset`: item ``i`` → (augmented tensor, class); with
  ``flip_as_new_identity`` items ``n..2n-1`` are the mirrored flanks as new classes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from reid.data.records import ImageRecord
from reid.embed import letterbox, load_record_image
from reid.errors import ReidError
from reid.paths import data_home
from training.config import DataConfig

__all__ = [
    "FlankDataset",
    "ImageCache",
    "cache_size",
    "flank_identities",
    "load_records",
    "load_rehearsal",
    "synthetic_folder",
]

CACHE_FORMAT = 1


def synthetic_folder(data: DataConfig, preset: str | None = None) -> Path:
    base = Path(data.synthetic_dir) if data.synthetic_dir else data_home() / "synthetic"
    return base / str(preset or data.synthetic)


def load_rehearsal(
    data: DataConfig, *, generate: bool = True, workers: int = 2, show_progress: bool = True
) -> list[ImageRecord]:
    """The rehearsal flanks (``data.rehearsal``, rendered first when missing and
    ``generate``): the first ``data.rehearsal_individuals`` individuals of each species in
    the preset's order, all their photos; ``[]`` without rehearsal."""
    if data.rehearsal is None:
        return []
    records = _synthetic(data, data.rehearsal, generate, workers, show_progress)
    if data.rehearsal_individuals is None:
        return records
    chosen: dict[str, list[str]] = {}
    for r in records:
        ids = chosen.setdefault(r.species, [])
        if r.individual_id not in ids:
            ids.append(r.individual_id)
    keep = {(s, i) for s, ids in chosen.items() for i in ids[: data.rehearsal_individuals]}
    return [r for r in records if (r.species, r.individual_id) in keep]


def load_records(
    data: DataConfig, *, generate: bool = True, workers: int = 2, show_progress: bool = True
) -> list[ImageRecord]:
    """The catalogue's records; a synthetic preset is rendered first when missing (only
    when ``generate``: under data parallelism one rank renders, the others wait)."""
    from reid.data.load import load_catalogue

    if data.manifest is not None:
        return load_catalogue(Path(data.manifest))
    return _synthetic(data, str(data.synthetic), generate, workers, show_progress)


def _synthetic(
    data: DataConfig, preset: str, generate: bool, workers: int, show_progress: bool
) -> list[ImageRecord]:
    """A synthetic preset's records, rendered into the data home first when missing (only
    when ``generate``)."""
    from reid.data.load import load_catalogue

    folder = synthetic_folder(data, preset)
    if not (folder / "manifest.csv").is_file():
        if not generate:
            raise ReidError(f"synthetic catalogue {folder} is missing")
        from reid.presets import get_preset, render_preset

        render_preset(get_preset(preset), folder, workers=workers,
                      show_progress=show_progress)  # fmt: skip
    return load_catalogue(folder)


def flank_identities(
    records: Sequence[ImageRecord], unsided_flanks: bool = False
) -> tuple[list[ImageRecord], np.ndarray, list[tuple[str, str]]]:
    """The records that train, their class indices, and the classes (individual, side).

    With ``unsided_flanks`` (``data.unsided_flanks``), an individual none of whose images
    has a known side is one class, side ``unknown``: right where an identity is one flank
    (ATRW's entities), wrong where it is an animal (both flanks would share a class), so
    it is off by default and such images do not train.

    Classes are sorted, so the same records always give the same indices.
    """
    sided = {r.individual_id for r in records if r.side in ("left", "right")}
    kept = [
        r
        for r in records
        if r.individual_id is not None
        and (r.side in ("left", "right") or (unsided_flanks and r.individual_id not in sided))
    ]
    classes = sorted({(r.individual_id, r.side) for r in kept})  # type: ignore[misc]
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[(r.individual_id, r.side)] for r in kept], dtype=np.int64)
    return kept, labels, classes  # type: ignore[return-value]


def cache_size(input_size: tuple[int, int], scale: float) -> tuple[int, int]:
    """(H, W) of cached images: the input size × ``scale``, rounded."""
    return (round(input_size[0] * scale), round(input_size[1] * scale))


class ImageCache:
    """Decoded, cropped, letterboxed images of ``records`` as an (N, H, W, 3) uint8 array.

    ``folder`` None keeps the array in memory; otherwise it is a ``.npy`` file there,
    opened as a read-only memmap (shared by data-loader workers and later runs) and
    built only when no file has the same key. The key covers each record's path, box,
    file modification time and size, and the cache's size and fill colour, so a changed
    image or a different input size builds a new file.
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        size: tuple[int, int],
        fill: Sequence[int],
        folder: str | Path | None = None,
    ) -> None:
        self.records = list(records)
        self.size = (int(size[0]), int(size[1]))
        self.fill = [int(v) for v in fill]
        self.folder = Path(folder) if folder is not None else None

    def key(self) -> str:
        h = hashlib.sha256()
        h.update(json.dumps([CACHE_FORMAT, self.size, self.fill]).encode())
        for r in self.records:
            try:
                st = os.stat(r.path)
            except OSError as e:
                raise ReidError(f"{r.path}: cannot read: {e.strerror or e}") from None
            box = None if r.bbox is None else [r.bbox.x, r.bbox.y, r.bbox.w, r.bbox.h]
            h.update(json.dumps([str(r.path), box, st.st_mtime_ns, st.st_size]).encode())
        return h.hexdigest()[:24]

    @property
    def path(self) -> Path | None:
        if self.folder is None:
            return None
        return self.folder / f"images-{self.key()}-{self.size[0]}x{self.size[1]}.npy"

    def exists(self) -> bool:
        return self.path is not None and self.path.is_file()

    def load(self, workers: int = 2, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """The array: read from the cache file if there is one, else decoded (and saved)."""
        path = self.path
        if path is not None and path.is_file():
            arr = np.load(path, mmap_mode="r")
            if arr.shape == (len(self.records), *self.size, 3) and arr.dtype == np.uint8:
                if progress:
                    progress(len(self.records))
                return arr
        if path is None:
            out = np.empty((len(self.records), *self.size, 3), np.uint8)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
            out = np.lib.format.open_memmap(
                tmp, mode="w+", dtype=np.uint8, shape=(len(self.records), *self.size, 3)
            )

        def decode(i: int) -> int:
            image = load_record_image(self.records[i], self.size)
            out[i] = letterbox(image, self.size, self.fill)
            return i

        with ThreadPoolExecutor(max(1, workers)) as pool:
            for _ in pool.map(decode, range(len(self.records))):
                if progress:
                    progress(1)
        if path is None:
            return out
        out.flush()  # type: ignore[union-attr]
        os.replace(tmp, path)
        return np.load(path, mmap_mode="r")


class FlankDataset(Dataset):
    """Cached images with their flank classes, augmented by ``transform``.

    With ``flip_as_new_identity`` the dataset has ``2n`` items: item ``n + i`` is image
    ``i`` mirrored, labelled ``num_classes + label[i]`` (a mirrored flank is a pattern no
    real flank has: a new identity, never the original one).
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        num_classes: int,
        transform: Callable[[torch.Tensor], torch.Tensor],
        flip_as_new_identity: bool = False,
    ) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.base_labels = np.asarray(labels, dtype=np.int64)
        self.base_classes = int(num_classes)
        self.transform = transform
        self.flip = bool(flip_as_new_identity)
        self.labels = (
            np.concatenate([self.base_labels, self.base_labels + self.base_classes])
            if self.flip
            else self.base_labels
        )
        self.num_classes = self.base_classes * (2 if self.flip else 1)

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, i: int) -> torch.Tensor:
        """Item ``i`` before augmentation: (3, H, W) uint8 (mirrored for flipped items)."""
        n = len(self.base_labels)
        x = torch.from_numpy(np.array(self.images[i % n])).permute(2, 0, 1)
        return x.flip(-1) if i >= n else x

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.image(i)), int(self.labels[i])
