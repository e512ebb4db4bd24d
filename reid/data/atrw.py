"""ATRW (Amur Tiger Re-identification in the Wild, CVWC 2019) re-ID annotations.

Files read (images are optional: without ``image_dir`` nothing checks they exist):

- ``reid_list_train.csv``: no header, rows ``entity_id,filename`` (``0,002019.jpg``);
- ``reid_keypoints_train.json`` (and ``_test``): ``{filename: [x, y, v] * 15}``, flat or
  as 15 triples, ``v`` = 0 for a keypoint that is not labelled (COCO convention);
- ``gt_test_plain.json``: the plain re-ID test ground truth, a list of
  ``{imgid, query: "sing" | "multi", frame: [a, b, frame_number], entityid}``; the image
  is ``%06d.jpg % imgid``, ``(a, b)`` identifies the camera, entity ``-1`` is junk.

ATRW does not annotate the flank. An entity is one flank of one tiger, all its photos
showing that flank with the animal facing the same way, so the training list's entities
get a side from their keypoints (:func:`keypoints_facing`: a tiger facing left shows its
left flank), by majority over the entity's labelled photos; an entity none of whose
photos has usable keypoints stays ``unknown`` (one flank of unknown side). Test records
have no keypoints: side ``unknown``.

Keypoints are checked only for what can be checked without the image: a labelled point
outside the photo (ATRW has some, with negative coordinates) is dropped when it makes a
box impossible, and a box is optional.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from reid.data.manifest import read_text
from reid.data.records import BBox, ImageRecord, Side
from reid.errors import ManifestError

#: The 15 keypoints of ATRW's pose annotation, in file order.
KEYPOINT_NAMES: tuple[str, ...] = (
    "left_ear",
    "right_ear",
    "nose",
    "right_shoulder",
    "right_front_paw",
    "left_shoulder",
    "left_front_paw",
    "right_hip",
    "right_knee",
    "right_back_paw",
    "left_hip",
    "left_knee",
    "left_back_paw",
    "tail",
    "center",
)
QUERY_KINDS: tuple[str, ...] = ("sing", "multi")
JUNK_ENTITY = -1


@dataclass(frozen=True, slots=True)
class ATRWTestRecord:
    """One image of the ATRW plain re-ID test set and how the protocol scores it.

    ``query`` is ``sing`` (scored as a single-camera query) or ``multi`` (cross-camera);
    ``camera`` is ``frame[0:2]`` and ``frame`` the frame number in that camera's video.
    """

    imgid: int
    query: Literal["sing", "multi"]
    camera: tuple[int, int]
    frame: int
    entityid: int

    @property
    def filename(self) -> str:
        return f"{self.imgid:06d}.jpg"

    @property
    def is_junk(self) -> bool:
        return self.entityid == JUNK_ENTITY

    @property
    def camera_id(self) -> str:
        return f"{self.camera[0]}-{self.camera[1]}"

    def to_image_record(self, image_dir: Path | str) -> ImageRecord:
        """The catalogue record of this image, found in ``image_dir``; junk is unidentified."""
        return ImageRecord(
            path=Path(image_dir) / self.filename,
            individual_id=None if self.is_junk else str(self.entityid),
            species="tiger",
            camera_id=self.camera_id,
            frame=self.frame,
        )


def read_atrw_test_plain(
    path: Path | str, image_dir: Path | str | None = None
) -> list[ATRWTestRecord]:
    """The records of ``gt_test_plain.json`` in file order.

    With ``image_dir``, every image ``%06d.jpg`` must exist there.
    """
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, list):
        raise ManifestError(
            f"{path}: expected a JSON list of {{imgid, query, frame, entityid}} records, "
            f"found a {type(data).__name__}"
        )
    if not data:
        raise ManifestError(f"{path}: has no records")
    records: list[ATRWTestRecord] = []
    seen: dict[int, int] = {}
    for i, entry in enumerate(data):
        try:
            record = _parse_test_entry(entry)
        except ValueError as e:
            raise ManifestError(f"{path}: record {i}: {e}") from None
        if record.imgid in seen:
            raise ManifestError(
                f"{path}: record {i}: imgid {record.imgid} is already record {seen[record.imgid]}"
            )
        seen[record.imgid] = i
        records.append(record)
    if image_dir is not None:
        _check_images(path, Path(image_dir), [r.filename for r in records])
    return records


def read_atrw_test_records(
    path: Path | str, image_dir: Path | str | None = None
) -> list[ImageRecord]:
    """``gt_test_plain.json`` as catalogue records (image folder: ``image_dir``, else the
    JSON file's folder), in file order."""
    path = Path(path)
    folder = Path(image_dir).resolve() if image_dir is not None else path.parent.resolve()
    return [r.to_image_record(folder) for r in read_atrw_test_plain(path, image_dir)]


def _parse_test_entry(entry: object) -> ATRWTestRecord:
    if not isinstance(entry, dict):
        raise ValueError(f"expected an object, found {entry!r}")
    missing = [k for k in ("imgid", "query", "frame", "entityid") if k not in entry]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    imgid, query, frame, entityid = (entry[k] for k in ("imgid", "query", "frame", "entityid"))
    if not _is_int(imgid) or imgid < 0:
        raise ValueError(f"imgid {imgid!r} is not a non-negative integer")
    prefix = f"imgid {imgid}: "
    if query not in QUERY_KINDS:
        raise ValueError(f"{prefix}query {query!r} is not one of {', '.join(QUERY_KINDS)}")
    if not (isinstance(frame, list) and len(frame) == 3 and all(_is_int(v) for v in frame)):
        raise ValueError(f"{prefix}frame {frame!r} is not [a, b, frame_number] integers")
    if not _is_int(entityid) or entityid < JUNK_ENTITY:
        raise ValueError(f"{prefix}entityid {entityid!r} is not an integer >= -1")
    return ATRWTestRecord(
        imgid=imgid,
        query=query,
        camera=(frame[0], frame[1]),
        frame=frame[2],
        entityid=entityid,
    )


def read_atrw_reid_list(path: Path | str) -> list[tuple[int, str]]:
    """``(entity_id, filename)`` rows of ``reid_list_train.csv`` (no header), in file order."""
    path = Path(path)
    text = read_text(path, "ATRW re-ID list")
    rows: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    reader = csv.reader(io.StringIO(text, newline=""))
    for cells in reader:
        line = reader.line_num
        cells = [c.strip() for c in cells]
        if not any(cells):
            continue
        if len(cells) != 2 or not cells[0].lstrip("-").isdigit() or not cells[1]:
            raise ManifestError(
                f"{path}:{line}: expected 'entity_id,filename' (e.g. 0,002019.jpg), "
                f"found {','.join(cells)!r}"
            )
        entity, filename = int(cells[0]), cells[1]
        if entity < 0:
            raise ManifestError(f"{path}:{line}: entity_id {entity} is negative")
        if filename in seen:
            raise ManifestError(
                f"{path}:{line}: filename {filename!r} is already listed on line {seen[filename]}"
            )
        seen[filename] = line
        rows.append((entity, filename))
    if not rows:
        raise ManifestError(f"{path}: has no rows")
    return rows


def read_atrw_keypoints(path: Path | str) -> dict[str, np.ndarray]:
    """``{filename: (15, 3) float array of x, y, visibility}`` from a keypoints JSON."""
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: expected a JSON object {{filename: keypoints}}")
    out: dict[str, np.ndarray] = {}
    n = len(KEYPOINT_NAMES)
    for name, values in data.items():
        try:
            kp = np.asarray(values, dtype=np.float64).reshape(n, 3)
        except (TypeError, ValueError):
            raise ManifestError(
                f"{path}: {name!r}: keypoints are not {n} [x, y, visibility] numbers"
            ) from None
        if not np.isfinite(kp).all():
            raise ManifestError(f"{path}: {name!r}: keypoints have a non-finite value")
        out[name] = kp
    return out


#: Keypoint indices of the head (ears, nose) and of the rear (hips, tail) in file order.
HEAD_POINTS: tuple[int, ...] = (0, 1, 2)
REAR_POINTS: tuple[int, ...] = (7, 10, 13)
CENTRE_POINT = 14


def keypoints_facing(keypoints: np.ndarray, min_offset: float = 1.0) -> Side | None:
    """The flank a photo shows, from its pose keypoints, or ``None`` when they cannot tell.

    A tiger seen from the side with its head to the left of its rear (or of its centre)
    faces left and shows its left flank. Only labelled points with non-negative
    coordinates count; the head must be at least ``min_offset`` pixels left or right of
    the rear.
    """
    kp = np.asarray(keypoints, dtype=np.float64).reshape(-1, 3)
    usable = (kp[:, 2] > 0) & (kp[:, 0] >= 0) & (kp[:, 1] >= 0)
    head = [i for i in HEAD_POINTS if usable[i]]
    rear = [i for i in REAR_POINTS if usable[i]] or ([CENTRE_POINT] if usable[CENTRE_POINT] else [])
    if not head or not rear:
        return None
    dx = kp[head, 0].mean() - kp[rear, 0].mean()
    if abs(dx) < min_offset:
        return None
    return "left" if dx < 0 else "right"


def entity_sides(
    rows: list[tuple[int, str]], keypoints: dict[str, np.ndarray]
) -> dict[int, Side]:
    """Each entity's side: the majority of its photos' :func:`keypoints_facing` (``unknown``
    when no photo tells, or on a tie)."""
    votes: dict[int, list[int]] = {}
    for entity, filename in rows:
        v = votes.setdefault(entity, [0, 0])
        kp = keypoints.get(filename)
        facing = keypoints_facing(kp) if kp is not None else None
        if facing == "left":
            v[0] += 1
        elif facing == "right":
            v[1] += 1
    return {
        e: "left" if left > right else "right" if right > left else "unknown"
        for e, (left, right) in votes.items()
    }


def keypoints_bbox(keypoints: np.ndarray, margin: float = 0.1, min_points: int = 4) -> BBox | None:
    """A box around the labelled keypoints, grown by ``margin`` of its size on each side.

    ``None`` when fewer than ``min_points`` usable keypoints are labelled (points with a
    negative coordinate lie outside the photo and are ignored) or they span no area.
    """
    kp = np.asarray(keypoints, dtype=np.float64).reshape(-1, 3)
    xy = kp[(kp[:, 2] > 0) & (kp[:, 0] >= 0) & (kp[:, 1] >= 0), :2]
    if len(xy) < min_points:
        return None
    (x0, y0), (x1, y1) = xy.min(axis=0), xy.max(axis=0)
    w, h = x1 - x0, y1 - y0
    if w <= 0 or h <= 0:
        return None
    x0, y0 = max(0.0, x0 - margin * w), max(0.0, y0 - margin * h)
    x1, y1 = x1 + margin * w, y1 + margin * h
    return BBox(float(x0), float(y0), float(x1 - x0), float(y1 - y0))


def read_atrw_train(
    list_path: Path | str,
    keypoints_path: Path | str | None = None,
    image_dir: Path | str | None = None,
    *,
    bbox_margin: float | None = None,
    sides: bool = True,
) -> list[ImageRecord]:
    """Catalogue records of the ATRW re-ID training list, in file order.

    ``keypoints_path`` defaults to ``reid_keypoints_train.json`` beside the list when it
    is there. The photos are already tight boxes around the whole tiger (as ATRW's test
    photos, which have no keypoints), so by default the whole photo is used; with
    ``bbox_margin`` a record's ``bbox`` is :func:`keypoints_bbox` of its keypoints
    where they give one. With ``sides`` each entity gets the side of :func:`entity_sides`.
    Images are in ``image_dir`` (checked to exist), else in ``train/`` beside the list
    when that folder exists (the official layout), else taken as relative to the list's
    folder (not checked).
    """
    list_path = Path(list_path)
    rows = read_atrw_reid_list(list_path)
    if keypoints_path is None:
        beside = list_path.parent / "reid_keypoints_train.json"
        keypoints_path = beside if beside.is_file() else None
    keypoints = read_atrw_keypoints(keypoints_path) if keypoints_path is not None else {}
    if image_dir is None and (list_path.parent / "train").is_dir():
        image_dir = list_path.parent / "train"
    if image_dir is not None:
        _check_images(list_path, Path(image_dir), [f for _, f in rows])
    folder = Path(image_dir).resolve() if image_dir is not None else list_path.parent.resolve()
    side_of = entity_sides(rows, keypoints) if sides else {}
    records = []
    for entity, filename in rows:
        kp = keypoints.get(filename)
        bbox = None
        if kp is not None and bbox_margin is not None:
            bbox = keypoints_bbox(kp, margin=bbox_margin)
        records.append(
            ImageRecord(
                path=folder / filename,
                individual_id=str(entity),
                species="tiger",
                side=side_of.get(entity, "unknown"),
                bbox=bbox,
            )
        )
    return records


def _check_images(source: Path, image_dir: Path, filenames: list[str]) -> None:
    if not image_dir.is_dir():
        raise ManifestError(f"{source}: image folder {image_dir} not found")
    missing = [f for f in filenames if not (image_dir / f).is_file()]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise ManifestError(f"{source}: image {image_dir / missing[0]} not found{more}")


def _read_json(path: Path) -> object:
    text = read_text(path, "JSON file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ManifestError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
