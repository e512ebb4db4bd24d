"""read_manifest: every field validated, every error names file, line and field."""

from __future__ import annotations

import re
import string
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from reid.data.manifest import read_manifest, write_manifest
from reid.data.records import MANIFEST_COLUMNS, BBox, ImageRecord
from reid.errors import ManifestError

HEADER = ",".join(MANIFEST_COLUMNS)
GOOD = "a.jpg,T-017,tiger,left,2024-03-01T05:12:00Z,Lazovsky,RU,43.2,133.9,cam-4,1,2,30,40,e1"


def write(tmp_path: Path, *lines: str, images: tuple[str, ...] = ("a.jpg", "b.jpg")) -> Path:
    for name in images:
        (tmp_path / name).write_bytes(b"")
    path = tmp_path / "manifest.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def raises_at(path: Path, line: int | None, fragment: str) -> None:
    with pytest.raises(ManifestError) as info:
        read_manifest(path)
    message = str(info.value)
    where = f"{path}:{line}: " if line is not None else f"{path}: "
    assert message.startswith(where), message
    assert fragment in message, message
    assert "\n" not in message


def test_reads_every_field(tmp_path):
    path = write(tmp_path, HEADER, GOOD)
    [r] = read_manifest(path)
    assert r == ImageRecord(
        path=(tmp_path / "a.jpg").resolve(),
        individual_id="T-017",
        species="tiger",
        side="left",
        captured_at=datetime(2024, 3, 1, 5, 12, tzinfo=UTC),
        site="Lazovsky",
        country="RU",
        lat=43.2,
        lon=133.9,
        camera_id="cam-4",
        bbox=BBox(1, 2, 30, 40),
        encounter="e1",
    )


def test_optional_columns_may_be_missing_and_unknown_ones_are_ignored(tmp_path):
    absolute = tmp_path / "abs.png"
    absolute.write_bytes(b"")
    path = write(
        tmp_path,
        "notes,species,path,individual_id",
        "hello,Tiger,a.jpg,T1",
        f"x,leopard,{absolute},",
    )
    first, second = read_manifest(path)
    assert (first.species, first.individual_id, first.side) == ("tiger", "T1", "unknown")
    assert first.captured_at is None and first.bbox is None and first.country is None
    assert second.path == absolute and second.individual_id is None  # unidentified


def test_offset_timestamp_becomes_utc_and_bom_and_blank_lines_are_fine(tmp_path):
    path = tmp_path / "manifest.csv"
    (tmp_path / "a.jpg").write_bytes(b"")
    path.write_text(
        "\ufeffpath,individual_id,species,captured_at\n\na.jpg,T1,tiger,2024-03-01T14:12:00+09:00\n",
        encoding="utf-8",
    )
    [r] = read_manifest(path)
    assert r.captured_at == datetime(2024, 3, 1, 5, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("column", "value", "fragment"),
    [
        ("side", "top", "side 'top' is not one of left, right, unknown"),
        ("country", "XX", "country 'XX' is not an ISO 3166-1 alpha-2 code"),
        ("country", "RUS", "country 'RUS' is not an ISO 3166-1 alpha-2 code"),
        ("captured_at", "2024-03-01T05:12:00", "captured_at '2024-03-01T05:12:00' has no timezone"),
        ("captured_at", "yesterday", "captured_at 'yesterday' is not an ISO 8601"),
        ("captured_at", "2999-01-01T00:00:00Z", "is in the future"),
        ("lat", "95", "lat 95.0 is outside -90..90"),
        ("lon", "east", "are not numbers"),
        ("lat", "", "lat and lon must be given together"),
        ("bbox_w", "-3", "bbox size -3.0x40.0 is not positive"),
        ("bbox_x", "", "bbox_x, bbox_y, bbox_w and bbox_h must be given together"),
        ("bbox_y", "a", "is not a number"),
        ("species", "", "species is empty"),
        ("species", "tiger!", "species 'tiger!'"),
        ("path", "", "path is empty"),
    ],
)
def test_bad_field_names_file_line_and_field(tmp_path, column, value, fragment):
    cells = GOOD.split(",")
    cells[MANIFEST_COLUMNS.index(column)] = value
    path = write(tmp_path, HEADER, GOOD.replace("a.jpg", "b.jpg"), "", ",".join(cells))
    raises_at(path, 4, fragment)


def test_missing_image_names_its_path(tmp_path):
    path = write(tmp_path, HEADER, GOOD.replace("a.jpg", "gone/c.jpg"))
    raises_at(path, 2, "path 'gone/c.jpg': image file not found")
    assert read_manifest(path, check_images=False)[0].path == tmp_path.resolve() / "gone/c.jpg"


def test_duplicate_path(tmp_path):
    path = write(tmp_path, HEADER, GOOD, GOOD.replace("T-017", "T-018").replace("a.jpg", "./a.jpg"))
    raises_at(path, 3, "path './a.jpg' is already listed on line 2")


def test_future_is_relative_to_now(tmp_path):
    path = write(
        tmp_path, "path,individual_id,species,captured_at", "a.jpg,T1,tiger,2024-01-02T00:00:00Z"
    )
    with pytest.raises(ManifestError, match="in the future"):
        read_manifest(path, now=datetime(2024, 1, 1, tzinfo=UTC))
    assert read_manifest(path, now=datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=2))


def test_missing_file(tmp_path):
    raises_at(tmp_path / "manifest.csv", None, "not found")


def test_folder_instead_of_file(tmp_path):
    with pytest.raises(ManifestError, match="is a folder"):
        read_manifest(tmp_path)


def test_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "manifest.csv"
    (tmp_path / "a.jpg").write_bytes(b"")
    path.write_bytes(
        b"path,individual_id,species,site\na.jpg,T1,tiger,ok\na.jpg,T2,tiger,K\xe9ri\n"
    )
    raises_at(path, 3, "is not UTF-8")


@pytest.mark.parametrize("text", ["", "\n\n", "  \n"])
def test_empty_file(tmp_path, text):
    path = tmp_path / "manifest.csv"
    path.write_text(text)
    raises_at(path, None, "is empty")


def test_header_only(tmp_path):
    path = write(tmp_path, HEADER)
    raises_at(path, None, "has no rows")


def test_missing_required_column(tmp_path):
    path = write(tmp_path, "path,individual_id,side", "a.jpg,T1,left")
    raises_at(path, 1, "missing required column species")


def test_repeated_column(tmp_path):
    path = write(tmp_path, "path,individual_id,species,side,side", "a.jpg,T1,tiger,left,left")
    raises_at(path, 1, "column 'side' appears more than once")


def test_row_with_too_many_cells(tmp_path):
    path = write(tmp_path, "path,individual_id,species", "a.jpg,T1,tiger,oops")
    raises_at(path, 2, "has 4 cells but the header has 3 columns")


def test_line_numbers_count_multiline_cells(tmp_path):
    path = write(
        tmp_path,
        "path,individual_id,species,site",
        'a.jpg,T1,tiger,"two\nlines"',
        "b.jpg,T2,lion?,x",
    )
    raises_at(path, 4, "species 'lion?'")


# -- round trip ------------------------------------------------------------------------

_text = (
    st.text(alphabet=string.ascii_letters + string.digits + " -_,\"'é/", min_size=1, max_size=12)
    .map(str.strip)
    .filter(bool)
)
_micro = st.integers(-90_000_000, 90_000_000).map(lambda v: v / 1e6)
_coord = st.tuples(_micro, st.integers(-180_000_000, 180_000_000).map(lambda v: v / 1e6))
_pixels = st.floats(0, 10_000, allow_nan=False, allow_infinity=False)
_size = st.floats(0.5, 10_000, allow_nan=False, allow_infinity=False)


@st.composite
def records(draw, root: Path):
    n = draw(st.integers(1, 6))
    names = draw(
        st.lists(
            st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=8),
            min_size=n,
            max_size=n,
            unique=True,
        )
    )
    out = []
    for i, name in enumerate(names):
        lat, lon = draw(st.one_of(st.none(), _coord)) or (None, None)
        seconds = draw(st.integers(0, 1_700_000_000))
        out.append(
            ImageRecord(
                path=root / f"{name}_{i}.jpg",
                individual_id=draw(st.one_of(st.none(), _text)),
                species=draw(st.sampled_from(["tiger", "leopard", "amur_leopard"])),
                side=draw(st.sampled_from(["left", "right", "unknown"])),
                captured_at=draw(
                    st.one_of(st.none(), st.just(datetime.fromtimestamp(seconds, tz=UTC)))
                ),
                site=draw(st.one_of(st.none(), _text)),
                country=draw(st.one_of(st.none(), st.sampled_from(["RU", "CN", "IN", "NP"]))),
                lat=lat,
                lon=lon,
                camera_id=draw(st.one_of(st.none(), _text)),
                bbox=draw(st.one_of(st.none(), st.builds(BBox, _pixels, _pixels, _size, _size))),
                encounter=draw(st.one_of(st.none(), _text)),
            )
        )
    return out


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_write_then_read_round_trips(tmp_path, data):
    root = tmp_path.resolve() / "cat"
    root.mkdir(exist_ok=True)
    for old in root.iterdir():
        old.unlink()
    written = data.draw(records(root))
    for r in written:
        r.path.write_bytes(b"")
    assert read_manifest(write_manifest(written, root / "manifest.csv")) == written


def test_messages_are_one_line(tmp_path):
    path = write(tmp_path, HEADER, GOOD.replace(",RU,", ",XX,"))
    with pytest.raises(ManifestError) as info:
        read_manifest(path)
    assert re.fullmatch(
        r".*manifest\.csv:2: country 'XX' is not an ISO 3166-1 alpha-2 code.*", str(info.value)
    )


def test_relative_image_paths_are_written_relative_to_the_manifest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = Path("data") / "cat"
    (folder / "a").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(folder / "a" / "x.jpg")
    rec = ImageRecord(path=folder / "a" / "x.jpg", individual_id="A", species="tiger", side="left")
    write_manifest([rec], folder / "manifest.csv")
    assert (folder / "manifest.csv").read_text().splitlines()[1].startswith("a/x.jpg,")
    assert read_manifest(folder / "manifest.csv")[0].path.resolve() == rec.path.resolve()


def test_written_manifest_gets_the_mode_of_any_new_file(tmp_path):
    # Atomic writes go through mkstemp (mode 0600); the renamed file must not stay private.
    import os

    write(tmp_path, HEADER, GOOD)
    records = read_manifest(tmp_path / "manifest.csv")
    out = write_manifest(records, tmp_path / "copy" / "manifest.csv")
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert os.stat(out).st_mode & 0o777 == os.stat(plain).st_mode & 0o777
