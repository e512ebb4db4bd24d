"""Uploaded photos: read within limits, decode safely, check the metadata, keep them.

Nothing here writes until :func:`keep` is called, after everything else succeeded.
Photos are kept content-addressed (``MEDIA_DIR/ab/abcdef....jpg`` by SHA-256), so the same
photo uploaded twice is stored once.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from fastapi import UploadFile
from PIL import Image

from reid.errors import ImageError, ReidError
from reid.images import decode_image_bytes
from reid.privacy import looks_like_coordinates
from serve.problems import Problem, image_problem

#: Clock skew tolerated for capture times "in the future".
FUTURE_SLACK = timedelta(minutes=5)
_EXT = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "TIFF": ".tif",
        "BMP": ".bmp"}  # fmt: skip
_MIME = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp",
         "TIFF": "image/tiff", "BMP": "image/bmp"}  # fmt: skip


@dataclass(frozen=True)
class Photo:
    """A decoded upload: its bytes, hash, format and RGB pixels."""

    data: bytes
    sha256: str
    format: str
    pixels: np.ndarray
    name: str

    @property
    def mediatype(self) -> str:
        return _MIME.get(self.format, "application/octet-stream")


def read_upload(upload: UploadFile, max_bytes: int, max_pixels: int, field: str = "image") -> Photo:
    """The upload decoded, or a 4xx naming ``field``: too many bytes (413), too many
    pixels (413), not an image / unsupported format (415), corrupt or truncated (422)."""
    data = upload.file.read(max_bytes + 1)
    name = Path(upload.filename or field).name
    if len(data) > max_bytes:
        raise Problem(413, f"{name}: over the {max_bytes:,} byte limit", field=field,
                      kind="upload-too-large")  # fmt: skip
    try:
        pixels = decode_image_bytes(data, name, max_bytes=max_bytes, max_pixels=max_pixels)
    except ImageError as e:
        raise image_problem(e, field) from None
    with Image.open(io.BytesIO(data)) as im:
        fmt = im.format or "JPEG"
    return Photo(data, hashlib.sha256(data).hexdigest(), fmt, pixels, name)


def to_utc(moment: datetime, field: str) -> datetime:
    """Naive UTC (naive input taken as UTC); a 422 naming ``field`` for a time that has no
    UTC equivalent (e.g. 0001-01-01T00:00:00+14:00, before year 1 in UTC)."""
    if moment.tzinfo is None:
        return moment
    try:
        return moment.astimezone(UTC).replace(tzinfo=None)
    except (OverflowError, ValueError):
        raise Problem(422, f"{field} {moment.isoformat()} is outside the range of UTC times",
                      field=field) from None  # fmt: skip


def check_time(moment: datetime, field: str = "captured_at") -> datetime:
    """Naive UTC; a 422 for a time in the future."""
    moment = to_utc(moment, field)
    if moment > datetime.now(UTC).replace(tzinfo=None) + FUTURE_SLACK:
        raise Problem(422, f"{field} {moment.isoformat()}Z is in the future", field=field)
    if moment.year < 1900:
        raise Problem(422, f"{field} {moment.isoformat()} is before 1900", field=field)
    return moment


def check_country_code(country: str, field: str = "country") -> str:
    from reid.registry.services import check_country

    try:
        return check_country(country)
    except ReidError as e:
        raise Problem(422, str(e), field=field) from None


def check_place(country: str, lat: float | None, lon: float | None) -> None:
    """A 422 when only one coordinate is given, or the point lies outside ``country``."""
    if (lat is None) != (lon is None):
        field = "lon" if lon is None else "lat"
        raise Problem(422, "give both lat and lon, or neither", field=field)
    if lat is None or lon is None:
        return
    if not -90 <= lat <= 90:
        raise Problem(422, f"lat {lat} is outside -90..90", field="lat")
    if not -180 <= lon <= 180:
        raise Problem(422, f"lon {lon} is outside -180..180", field="lon")
    from reid.geo import country_contains

    try:
        inside = country_contains(country, lat, lon)
    except ReidError as e:
        raise Problem(422, str(e), field="country") from None
    if not inside:
        raise Problem(422, f"coordinates {lat}, {lon} are not in country {country}", field="lat")


def box_of(values: list[int | None], photo: Photo, field: str = "box") -> tuple | None:
    """(x, y, w, h) in pixels inside the photo, or None when no box was given."""
    if all(v is None for v in values):
        return None
    if any(v is None for v in values):
        raise Problem(422, "give all of box_x, box_y, box_w, box_h, or none", field=field)
    x, y, w, h = (int(v) for v in values)  # type: ignore[arg-type]
    height, width = photo.pixels.shape[:2]
    if w < 8 or h < 8 or x < 0 or y < 0 or x + w > width or y + h > height:
        raise Problem(422, f"box ({x}, {y}, {w}, {h}) is not inside the {width}x{height} "
                      "photo with sides of 8 px or more", field=field)  # fmt: skip
    return (x, y, w, h)


def cropped(photo: Photo, box: tuple | None) -> np.ndarray:
    if box is None:
        return photo.pixels
    x, y, w, h = box
    return np.ascontiguousarray(photo.pixels[y : y + h, x : x + w])


def keep(photo: Photo, media_dir: Path) -> Path:
    """Write the photo (atomically, once per content) and return its path."""
    path = media_dir / photo.sha256[:2] / f"{photo.sha256}{_EXT.get(photo.format, '.img')}"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(photo.data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def thumbnail(path: str | Path, box: tuple | None, size: int) -> bytes:
    """A JPEG of the photo (its box, in pixels, when given) with the longer side ``size``."""
    from reid.images import load_image

    pixels = load_image(path)
    if box is not None:
        x, y, w, h = (int(round(v)) for v in box)
        pixels = pixels[max(0, y) : y + h, max(0, x) : x + w]
    im = Image.fromarray(pixels)
    im.thumbnail((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    im.save(out, "JPEG", quality=85)
    return out.getvalue()


def oriented_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of the photo as decoded, i.e. after its EXIF orientation (header
    only): the size that box fractions and pixel boxes refer to."""
    with Image.open(path) as im:
        w, h = im.size
        try:
            turned = im.getexif().get(0x0112) in (5, 6, 7, 8)
        except Exception:  # a malformed EXIF block: decoding keeps the image as stored too
            turned = False
    return (h, w) if turned else (w, h)


def box_pixels(path: str | Path, fractions: tuple) -> tuple[float, float, float, float]:
    """A box given as fractions of the (oriented) photo, in pixels of the decoded photo."""
    w, h = oriented_size(path)
    x, y, bw, bh = fractions
    return (x * w, y * h, bw * w, bh * h)


def scale_of(path: str | Path, box: tuple | None, size: int) -> tuple[float, int, int]:
    """(factor, width, height) of :func:`thumbnail` for the same arguments (header only)."""
    if box is not None:
        w, h = int(round(box[2])), int(round(box[3]))
    else:
        w, h = oriented_size(path)
    factor = min(1.0, size / max(w, h))
    return factor, max(1, round(w * factor)), max(1, round(h * factor))


def check_no_coordinates(code: str, field: str) -> None:
    """A 422 for a new site, camera or individual code that looks like it holds
    coordinates: codes are shown to every reader, including those who may see only
    generalised positions."""
    if looks_like_coordinates(code):
        raise Problem(422, f"{field} {code!r} looks like it holds coordinates: codes are "
                      "shown to readers who may not see exact positions; use a name",
                      field=field)  # fmt: skip
