"""The registry commands end to end on a SQLite registry in a temporary data home."""

import json

import pytest
from typer.testing import CliRunner

from reid.cli import app

runner = CliRunner()


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("REID_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("REID_DATABASE_URL", raising=False)
    photo = tmp_path / "t.jpg"
    photo.write_bytes(b"not really a jpeg, but hashed all the same")
    return tmp_path, photo


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result


def test_record_move_list_export_import_map(home):
    tmp, photo = home
    common = ["sightings", "add", photo, "--species", "tiger", "--individual", "T-9"]
    assert run(*common, "--site", "bardia", "--country", "NP", "--lat", 28.40,
               "--lon", 81.30, "--at", "2025-01-01T06:00:00Z", "--side", "left",
               "--by", "ana").exit_code == 0  # fmt: skip
    assert run(*common, "--site", "katarniaghat", "--country", "IN", "--lat", 28.25,
               "--lon", 81.15, "--at", "2025-01-03T06:00:00+05:30").exit_code == 0  # fmt: skip
    moved = run("movements", "--from", "NP", "--to", "IN", "--json")
    assert moved.exit_code == 0, moved.output
    (m,) = json.loads(moved.output)
    assert (m["individual"], m["from_country"], m["to_country"]) == ("T-9", "NP", "IN")
    assert m["to_time"] == "2025-01-03T00:30:00Z" and m["from_lat"] == 28.4
    coarse = json.loads(run("movements", "--json", "--generalise").output)[0]
    assert coarse["from_lat"] == 28.375
    assert json.loads(run("movements", "--from", "IN", "--json").output) == []
    shown = run("individuals", "show", "T-9")
    assert "NP -> IN" in shown.output and "confirm" in shown.output
    assert "T-9" in run("individuals", "list").output
    assert run("export", "geojson", "--out", tmp / "a.geojson").exit_code == 0
    kinds = [f["geometry"]["type"] for f in json.loads((tmp / "a.geojson").read_text())["features"]]
    assert sorted(kinds) == ["LineString", "Point", "Point"]
    assert run("export", "csv", "--out", tmp / "a").exit_code == 0
    assert (tmp / "a-movements.csv").read_text().count("\n") == 2
    assert run("export", "camtrap-dp", "--out", tmp / "pkg").exit_code == 0
    assert run("map", "T-9", "--out", tmp / "t9.png").exit_code == 0
    assert (tmp / "t9.png").read_bytes()[:4] == b"\x89PNG"
    assert run("map", "--movements", "--out", tmp / "all.png").exit_code == 0


def test_user_errors_are_one_line(home):
    tmp, photo = home
    bad = run("sightings", "add", photo, "--species", "tiger", "--site", "nowhere",
              "--at", "2025-01-01")  # fmt: skip
    assert bad.exit_code == 2 and "error: site 'nowhere' is new" in bad.output
    assert "not an ISO 3166-1" in run("movements", "--from", "XX").output
    (tmp / "pkg").mkdir()
    bad = run("import", "camtrap-dp", tmp / "pkg")
    assert bad.exit_code == 2 and "datapackage.json: missing" in bad.output
    assert "give an INDIVIDUAL or --movements" in run("map", "--out", tmp / "m.png").output


def test_map_of_movements_without_any_draws_what_there_is(home):
    tmp, photo = home
    empty = run("map", "--movements", "--out", tmp / "empty.png")
    assert empty.exit_code == 0, empty.output
    assert "no movements" in empty.output and "borders only" in empty.output
    assert (tmp / "empty.png").read_bytes()[:4] == b"\x89PNG"
    common = ["sightings", "add", photo, "--species", "tiger", "--site", "bardia"]
    assert run(*common, "--country", "NP", "--lat", 28.40, "--lon", 81.30,
               "--at", "2025-01-01T06:00:00Z", "--status", "proposed").exit_code == 0  # fmt: skip
    sites = run("map", "--movements", "--out", tmp / "sites.png")
    assert sites.exit_code == 0, sites.output
    assert "no movements" in sites.output and "1 sites" in sites.output
    assert run(*common, "--individual", "T-9", "--at", "2025-01-02T06:00:00Z").exit_code == 0
    seen = run("map", "--movements", "--out", tmp / "seen.png")
    assert seen.exit_code == 0, seen.output
    assert "no movements" in seen.output and "1 confirmed sightings" in seen.output
    assert (tmp / "seen.png").stat().st_size > 1000
    one = run("map", "T-9", "--out", tmp / "t9.png")
    assert one.exit_code == 0 and "no movements of T-9" in one.output


def test_generalised_outputs_name_no_place(home):
    """Site codes and photo folders that spell a camera's position (the operator's own
    names) never reach a generalised output: listings, movements, CSV, GeoJSON, Camtrap DP."""
    tmp, _ = home
    folder = tmp / "cam_27.5123_84.2611"
    folder.mkdir()
    photo = folder / "IMG_0001.jpg"
    photo.write_bytes(b"hashed all the same")
    common = ["sightings", "add", photo, "--species", "tiger", "--individual", "T-9"]
    assert run(*common, "--site", "cam_27.5123_84.2611", "--country", "NP", "--lat", 27.5123,
               "--lon", 84.2611, "--at", "2025-01-01T06:00:00Z").exit_code == 0  # fmt: skip
    assert run(*common, "--site", "waterhole N27.3712 E84.0208", "--country", "IN",
               "--lat", 27.3712, "--lon", 84.0208, "--at", "2025-01-05T06:00:00Z").exit_code == 0
    outputs = [
        run("sightings", "list", "--generalise", "--json").output,
        run("sightings", "list", "--generalise").output,
        run("movements", "--generalise", "--json").output,
        run("individuals", "show", "T-9", "--generalise").output,
    ]
    assert run("export", "csv", "--generalise", "--out", tmp / "g").exit_code == 0
    assert run("export", "geojson", "--generalise", "--out", tmp / "g.geojson").exit_code == 0
    assert run("export", "camtrap-dp", "--generalise", "--out", tmp / "gpkg").exit_code == 0
    files = [tmp / "g-sightings.csv", tmp / "g-movements.csv", tmp / "g.geojson",
             *(tmp / "gpkg").glob("*")]  # fmt: skip
    outputs += [f.read_text() for f in files]
    assert len(outputs) >= 9 and all(outputs)
    for text in outputs:
        for digits in ("5123", "2611", "3712", "0208"):
            assert digits not in text, (digits, text[:300])
    # the operator's own exact view keeps the names
    assert "cam_27.5123_84.2611" in run("sightings", "list", "--json").output
