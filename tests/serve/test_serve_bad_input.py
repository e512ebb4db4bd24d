"""Bad input: a 4xx with a problem body naming the field, and nothing stored."""

import io
import zlib
from struct import pack

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from reid.registry import Media, Registry, Sighting
from tests.serve.conftest import jpeg, match_form, photo_bytes


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return pack(">I", len(data)) + kind + data + pack(">I", zlib.crc32(kind + data))

    ihdr = pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0"))


def _gif() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 32)).save(out, "GIF")
    return out.getvalue()


GOOD = np.random.default_rng(0).integers(0, 255, (120, 240, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    ("image", "form", "status", "field"),
    [
        (b"this is not an image at all", {}, 415, "image"),
        (jpeg(GOOD)[:400], {}, 422, "image"),  # truncated
        (b"\xff\xd8" + b"\0" * 3_000_000, {}, 413, "image"),  # over max_upload_bytes
        (_png_claiming(50_000, 50_000), {}, 413, "image"),  # decompression bomb
        (_gif(), {}, 415, "image"),  # unsupported format
        (None, {"country": "XX"}, 422, "country"),
        (None, {"country": "np1"}, 422, "country"),
        (None, {"captured_at": "2999-01-01T00:00:00Z"}, 422, "captured_at"),
        (None, {"captured_at": "yesterday"}, 422, "captured_at"),
        (None, {"lat": "27.40", "lon": "90.40"}, 422, "lat"),  # Bhutan, said to be Nepal
        (None, {"lat": "95"}, 422, "lat"),
        (None, {"lon": None}, 422, "lon"),
        (None, {"side": "top"}, 422, "side"),
        (None, {"species": "lion"}, 422, "species"),
        (None, {"box_x": 0, "box_y": 0, "box_w": 5000, "box_h": 20}, 422, "box"),
        (None, {"box_x": 0}, 422, "box"),
        (None, {"country": None, "lat": None, "lon": None}, 422, "country"),
    ],
)
def test_refused_with_the_field_named_and_nothing_stored(world, image, form, status, field):
    settings = world.app.state.reid.settings
    settings.max_upload_bytes = 2_000_000
    data = match_form(**form)
    body = image if image is not None else jpeg(GOOD)
    r = world.client.post("/v1/match", headers=world.auth("NPO", "contributor"), data=data,
                          files={"image": ("q.jpg", body, "image/jpeg")})  # fmt: skip
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["field"] == field and problem["status"] == status and problem["detail"]
    with Registry(settings.database_url).session() as s:
        assert s.scalar(select(func.count()).select_from(Sighting)) == 4  # the seeded ones
        assert s.scalar(select(func.count()).select_from(Media)) == 4
    assert not settings.media_dir.exists() or not any(settings.media_dir.rglob("*.*"))


def test_missing_image_and_bad_json_name_the_field(world, held_out):
    r = world.client.post("/v1/match", headers=world.auth("NPO", "contributor"),
                          data=match_form())  # fmt: skip
    assert r.status_code == 422 and r.json()["field"] == "image"
    code = world.sightings["NPO"]
    r = world.client.post(f"/v1/sightings/{code}/decision", headers=world.auth("NPO"),
                          json={"action": "maybe"})  # fmt: skip
    assert r.status_code == 422 and r.json()["field"] == "action"


def test_a_good_photo_with_a_box_is_stored_once(world, held_out):
    record = next(v[0] for v in held_out.values())
    data = photo_bytes(record)
    for _ in range(2):
        r = world.client.post("/v1/match", headers=world.auth("NPO", "contributor"),
                              data=match_form(box_x=10, box_y=10, box_w=200, box_h=100),
                              files={"image": ("q.jpg", data, "image/jpeg")})  # fmt: skip
        assert r.status_code == 200, r.text
    stored = [p for p in world.app.state.reid.settings.media_dir.rglob("*") if p.is_file()]
    assert len(stored) == 1 and stored[0].read_bytes() == data


@pytest.mark.parametrize("shape", [(1, 8000, 3), (8000, 1, 3)])
def test_a_photo_one_pixel_thin_is_matched_not_a_server_error(world, shape):
    """Shrinking its long side to the keypoints' size once rounded the short side to 0 px,
    and OpenCV's resize raised (a 500 for any contributor; an API probe found it)."""
    out = io.BytesIO()
    Image.fromarray(np.full(shape, 128, np.uint8)).save(out, "PNG")
    png = {"image": ("q.png", out.getvalue(), "image/png")}
    r = world.client.post("/v1/match", headers=world.auth("NPO", "contributor"),
                          data=match_form(), files=png)  # fmt: skip
    assert r.status_code == 200, r.text
