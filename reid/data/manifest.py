"""Manifest CSV: one row per image, columns :data:`reid.data.records.MANIFEST_COLUMNS`.

``path``, ``individual_id`` and ``species`` are required columns; the others may be left
out (their fields are then empty) and columns the schema does not know are ignored. Image
paths are relative to the manifest's folder (absolute paths are kept as they are). An
empty ``individual_id`` is an unidentified animal.

Every problem is a :class:`~reid.errors.ManifestError` in one line that names the file,
the line and the field: ``manifest.csv:17: country 'XX' is not an ISO 3166-1 alpha-2
code (e.g. RU, CN, IN)``.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from reid.data.records import (
    MANIFEST_COLUMNS,
    ImageRecord,
    parse_bbox,
    parse_coordinates,
    parse_country,
    parse_side,
    parse_species,
    parse_timestamp,
)
from reid.errors import ManifestError
from reid.paths import atomic_write

#: Columns a manifest must have; the rest of :data:`MANIFEST_COLUMNS` are optional.
REQUIRED_COLUMNS: tuple[str, ...] = ("path", "individual_id", "species")


def write_manifest(records: Iterable[ImageRecord], path: Path) -> Path:
    """Write ``records`` to ``path`` atomically; image paths are stored relative to it."""
    path = Path(path)
    root = path.parent.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
            writer.writeheader()
            for r in records:
                writer.writerow(r.as_row(root))

    atomic_write(path, write)
    return path


def read_manifest(
    path: Path | str, *, check_images: bool = True, now: datetime | None = None
) -> list[ImageRecord]:
    """Read a manifest CSV into records, in file order, validating every field.

    ``check_images`` checks that every image file exists; ``now`` is the moment after
    which a ``captured_at`` is in the future (default: the current time).
    """
    path = Path(path)
    header, rows = read_csv_table(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ManifestError(
            f"{path}:1: missing required column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)} (the header has: {', '.join(header) or 'nothing'}; "
            f"a manifest has {', '.join(MANIFEST_COLUMNS)})"
        )
    root = path.parent.resolve()
    seen: dict[str, int] = {}
    records: list[ImageRecord] = []
    for line, row in rows:
        try:
            record = _parse_row(row, root, now)
        except ValueError as e:
            raise ManifestError(f"{path}:{line}: {e}") from None
        key = os.path.normcase(str(record.path))
        if key in seen:
            raise ManifestError(
                f"{path}:{line}: path {row['path']!r} is already listed on line {seen[key]}"
            )
        seen[key] = line
        if check_images and not record.path.is_file():
            raise ManifestError(
                f"{path}:{line}: path {row['path']!r}: image file not found ({record.path})"
            )
        records.append(record)
    return records


def _parse_row(row: dict[str, str], root: Path, now: datetime | None) -> ImageRecord:
    def cell(name: str) -> str:
        return (row.get(name) or "").strip()

    raw_path = cell("path")
    if not raw_path:
        raise ValueError("path is empty")
    lat, lon = parse_coordinates(cell("lat"), cell("lon"))
    return ImageRecord(
        path=Path(os.path.normpath(root / raw_path)),
        individual_id=cell("individual_id") or None,
        species=parse_species(cell("species")),
        side=parse_side(cell("side")),
        captured_at=parse_timestamp(cell("captured_at"), now=now),
        site=cell("site") or None,
        country=parse_country(cell("country")),
        lat=lat,
        lon=lon,
        camera_id=cell("camera_id") or None,
        bbox=parse_bbox(cell("bbox_x"), cell("bbox_y"), cell("bbox_w"), cell("bbox_h")),
        encounter=cell("encounter") or None,
    )


def read_text(path: Path, what: str = "file") -> str:
    """The UTF-8 text of ``path`` (a byte-order mark is dropped), or a one-line error."""
    path = Path(path)
    if path.is_dir():
        raise ManifestError(f"{path}: is a folder, not a {what}")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ManifestError(f"{path}: {what} not found") from None
    except OSError as e:
        raise ManifestError(f"{path}: cannot read the {what}: {e.strerror or e}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ManifestError(
            f"{path}:{line}: is not UTF-8 text (byte 0x{data[e.start]:02x} at offset "
            f"{e.start}); save the file as UTF-8"
        ) from None


def read_csv_table(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The header (lower-cased, stripped) and ``(line number, row)`` of every data row.

    Blank lines are skipped. Errors: missing file, not UTF-8, empty, no data rows, a
    repeated column, a row with more cells than the header.
    """
    text = read_text(path, "CSV file")
    if not text.strip():
        raise ManifestError(f"{path}: is empty (expected a header row, then one row per image)")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        first = next((c for c in reader if any(h.strip() for h in c)), None)
        if first is None:
            raise ManifestError(f"{path}: has no header row")
        header = [h.strip().lower() for h in first]
        repeated = sorted({h for h in header if h and header.count(h) > 1})
        if repeated:
            raise ManifestError(f"{path}:1: column {repeated[0]!r} appears more than once")
        rows: list[tuple[int, dict[str, str]]] = []
        start = reader.line_num + 1
        for cells in reader:
            line, start = start, reader.line_num + 1
            if not any(c.strip() for c in cells):
                continue
            if len(cells) > len(header):
                raise ManifestError(
                    f"{path}:{line}: has {len(cells)} cells but the header has "
                    f"{len(header)} columns"
                )
            rows.append((line, dict(zip(header, cells, strict=False))))
    except csv.Error as e:
        raise ManifestError(f"{path}:{reader.line_num}: malformed CSV: {e}") from None
    if not rows:
        raise ManifestError(f"{path}: has no rows (only a header)")
    return header, rows
