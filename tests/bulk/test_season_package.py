"""A folder season (manifest or EXIF) gets a Camtrap DP package derived from it, and
``--registry`` loads its encounters as proposed sightings, as for a Camtrap DP source."""

import csv
import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from reid.bulk.bursts import group_bursts
from reid.bulk.camtrap_out import write_season_package
from reid.bulk.cluster import Proposal
from reid.bulk.sources import Capture
from reid.camtrap import import_package, read_package
from reid.cli import app
from reid.data.records import MANIFEST_COLUMNS, BBox
from reid.registry import Registry
from reid.registry.models import Deployment, Individual, Media, Sighting, Site

SAFE_CODE = re.compile(r"^[A-Za-z0-9._@~-]{1,128}$")  # a sighting code goes in a URL path


def _csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def folder(season, tmp_path_factory):
    """The synthetic season as a folder with ``manifest.csv``, made harder: every frame of
    one burst is corrupt, one frame of another burst is, one camera has no coordinates."""
    out = tmp_path_factory.mktemp("folder-season")
    rows = _csv(season / "season.csv")
    bursts: dict[str, list[dict]] = {}
    for r in rows:
        bursts.setdefault(r["encounter"], []).append(r)
    names = list(bursts)
    broken = names[0]
    cam = bursts[broken][0]["camera_id"]
    partial = next(n for n in names if bursts[n][0]["camera_id"] != cam)
    used = {cam, bursts[partial][0]["camera_id"]}
    placeless = next(r["camera_id"] for r in rows if r["camera_id"] not in used)
    for r in rows:
        dest = out / "cards" / r["camera_id"] / Path(r["path"]).name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(season / r["path"], dest)
        r["path"] = dest.relative_to(out).as_posix()
        if r["camera_id"] == placeless:
            r["lat"] = r["lon"] = ""
    for r in bursts[broken] + bursts[partial][1:2]:
        (out / r["path"]).write_bytes(b"not an image: the card was damaged")
    with (out / "manifest.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return {
        "root": out,
        "corrupt": {r["path"] for r in bursts[broken] + bursts[partial][1:2]},
        "placeless": placeless,
    }


@pytest.fixture(scope="module")
def loaded(folder, gallery, release, tmp_path_factory):
    """``reid bulk FOLDER --registry`` into a fresh SQLite registry: (run, url, summary)."""
    tmp = tmp_path_factory.mktemp("folder-run")
    run, url = tmp / "run", f"sqlite:///{tmp / 'registry.sqlite'}"
    argv = ["bulk", str(folder["root"]), "--index", str(gallery), "--out", str(run)]
    argv += ["--model", str(release), "--batch-size", "2", "--no-report", "--json"]
    result = CliRunner().invoke(app, argv, env={"REID_DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    return run, url, json.loads(result.output), argv


def test_the_derived_package_is_valid_camtrap_dp(folder, loaded):
    run, _url, summary, _ = loaded
    package = run / "camtrap-dp"
    assert summary["outputs"]["camtrap_dp"] == str(package)
    descriptor, tables = read_package(package)  # the project's Camtrap DP 1.0 checks
    assert descriptor["profile"].endswith("camtrap-dp/1.0/camtrap-dp-profile.json")
    encounters = {r["encounter"]: r for r in _csv(run / "encounters.csv")}
    placed = {k: r for k, r in encounters.items() if r["deployment"] != folder["placeless"]}
    deployments = {d["deploymentID"]: d for d in tables["deployments"]}
    assert {d["cameraID"] for d in deployments.values()} == {
        r["deployment"] for r in placed.values()
    }
    for d in deployments.values():  # place from the frames: site, country, coordinates
        assert re.search(r"country:(RU|CN)\b", d["deploymentTags"]) and d["locationName"]
        assert d["deploymentStart"] <= d["deploymentEnd"]
    media = {m["mediaID"]: m for m in tables["media"]}
    assert len(media) == sum(int(r["frames"]) for r in placed.values())  # one per frame
    for m in media.values():
        assert (package / m["filePath"]).resolve().is_file()
    # one observation per encounter with a decodable frame, on a frame that decoded
    readable = {k for k, r in placed.items() if r["decision"] != "unreadable"}
    obs = tables["observations"]
    assert sorted(o["eventID"] for o in obs) == sorted(readable)
    for o in obs:
        path = Path(media[o["mediaID"]]["filePath"])
        assert not any(path.as_posix().endswith(c) for c in folder["corrupt"])
        assert o["observationLevel"] == "media" and o["scientificName"] == "Panthera tigris"
        assert 0 < o["bboxWidth"] <= 1 and 0 < o["bboxHeight"] <= 1  # fractions of the image
        assert SAFE_CODE.match(o["observationID"]) and SAFE_CODE.match(o["mediaID"])
    left_out = summary["outputs"]["camtrap_dp_left_out"]
    assert folder["placeless"] in left_out and "no coordinates" in left_out
    assert "1 encounters with no decodable frame" in left_out


def test_folder_season_sightings_are_loaded_as_proposed(loaded):
    run, url, summary, _ = loaded
    encounters = {r["encounter"]: r for r in _csv(run / "encounters.csv")}
    assert [r["decision"] for r in encounters.values()].count("unreadable") == 1
    assert any(r["skipped"] and r["decision"] != "unreadable" for r in encounters.values())
    event_of = {
        o["observationID"]: o["eventID"] for o in _csv(run / "camtrap-dp" / "observations.csv")
    }
    reg = Registry(url)
    with reg.session() as s:
        total = len(s.scalars(select(Sighting)).all())
        found = s.execute(select(Sighting, Individual).join(Individual)).all()
        media = s.scalars(select(Media)).all()
    reg.close()
    # the review page opens the photos: absolute paths to the files, hashed
    assert media and all(Path(m.file_path).is_absolute() for m in media)
    assert all(Path(m.file_path).is_file() and len(m.sha256 or "") == 64 for m in media)
    # one sighting per encounter with a decodable frame (and a place), each with its individual
    assert total == len(found) == len(event_of) > 0
    assert f"{total} sightings" in summary["outputs"]["registry"]
    for sighting, individual in found:
        row = encounters[event_of[sighting.code]]
        assert row["decision"] in ("known", "new")
        assert individual.code == (row["individual"] or row["proposed_individual"])
        assert sighting.status == "proposed" and sighting.side == row["side"]
    decisions = {encounters[e]["decision"] for e in event_of.values()}
    assert decisions == {"known", "new"}  # matched and proposed new individuals both loaded


def test_running_again_loads_nothing_twice(loaded):
    run, url, _summary, argv = loaded
    result = CliRunner().invoke(app, argv, env={"REID_DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    again = json.loads(result.output)
    assert again["matched_now"] == 0
    assert again["outputs"]["registry"].endswith("0 sightings, 0 media, 0 individuals added")


# ---------------------------------------------------------------- EXIF-like, no model
T0 = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def _frame(tmp_path, key, deployment, seconds, lat=43.5, lon=131.9, **kw) -> Capture:
    from PIL import Image

    path = tmp_path / "tree" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 20)).save(path)
    when = None if seconds is None else T0 + timedelta(seconds=seconds)
    return Capture(key, path, deployment, when, "leopard", lat=lat, lon=lon, **kw)


def test_exif_like_season_package_and_import(tmp_path):
    """No site, no country (it comes from the coordinates), pixel boxes, an undated frame
    and a card without GPS; the package is valid and imports as proposed sightings."""
    frames = [
        _frame(tmp_path, "card 1/a.jpg", "card 1", 0, bbox=BBox(10, 5, 40, 30)),
        _frame(tmp_path, "card 1/b.jpg", "card 1", 2, side="left"),
        _frame(tmp_path, "card 1/c.jpg", "card 1", None),
        _frame(tmp_path, "card-2/d.jpg", "card-2", 9, lat=None, lon=None),
    ]
    encounters = group_bursts(frames)
    by_frame = {e.frames[0].key: e for e in encounters}
    first, other = by_frame["card 1/a.jpg"], by_frame["card 1/b.jpg"]

    def row(enc, decision, **kw):
        return {"decision": decision, "skipped": {}, "individual": None, "probability": None,
                "new_probability": 0.9, **kw}  # fmt: skip

    results = {e.id: row(e, "new") for e in encounters}
    results[first.id] = row(first, "known", individual="L-7", probability=0.8)
    proposed = {other.id: Proposal("NEW-abc-L-001", "leopard", "left", (other.id,), None)}
    got = write_season_package(tmp_path / "pkg", encounters, results, proposed, "tiny@1")
    assert got.observations == 2
    assert any("'card-2'" in x and "no coordinates" in x for x in got.left_out)
    assert any("1 undated" in x for x in got.left_out)
    _, tables = read_package(tmp_path / "pkg")
    (dep,) = tables["deployments"]
    assert dep["cameraID"] == "card 1" and SAFE_CODE.match(dep["deploymentID"])
    assert len(tables["media"]) == 2  # the undated frame and the card without GPS are out
    box = next(o for o in tables["observations"] if o["eventID"] == first.id)
    assert (box["bboxX"], box["bboxY"], box["bboxWidth"], box["bboxHeight"]) == (
        0.25, 0.25, 0.75, 0.75,  # clipped to the 40 x 20 image
    )  # fmt: skip
    reg = Registry(f"sqlite:///{tmp_path / 'registry.sqlite'}")
    with reg.session() as s:
        stats = import_package(s, tmp_path / "pkg", decided_by="test")
        assert (stats.deployments, stats.media, stats.sightings) == (1, 2, 2)
        site = s.scalar(select(Site).join(Deployment).where(Deployment.camera_id == "card 1"))
        assert site.country == "RU"  # from the coordinates: the frames name no country
        got_ids = {
            sig.side: ind.code
            for sig, ind in s.execute(select(Sighting, Individual).join(Individual)).all()
        }
        assert got_ids == {"unknown": "L-7", "left": "NEW-abc-L-001"}
        assert len(s.scalars(select(Media)).all()) == 2
    reg.close()


def test_observations_with_no_decoded_image_are_not_loaded(tmp_path):
    """A Camtrap DP source's observation is skipped when none of its images decoded (a
    media-level one: its frame; an event-level one: all of its frames)."""
    from reid.bulk.run import undecoded_observations

    frames = [
        _frame(tmp_path, "a.jpg", "c1", 0, observation="o1"),  # decoded
        _frame(tmp_path, "b.jpg", "c1", 1, observation="o2"),  # failed
        _frame(tmp_path, "c.jpg", "c1", 2, observation="ev"),  # failed
        _frame(tmp_path, "d.jpg", "c1", 3, observation="ev"),  # decoded: the event stays
        _frame(tmp_path, "e.jpg", "c2", 0, observation="o3"),  # an unreadable encounter
    ]
    encounters = group_bursts(frames)
    skipped = {"b.jpg": "corrupt", "c.jpg": "corrupt", "e.jpg": "corrupt"}
    results = {e.id: {"skipped": {f.key: skipped[f.key] for f in e.frames if f.key in skipped}}
               for e in encounters}  # fmt: skip
    assert undecoded_observations(encounters, results) == {"o2", "o3"}


def test_pixel_box_at_the_edge_never_passes_it_after_rounding(tmp_path):
    """A box touching the right edge whose corner rounds up: x + width, as written,
    stays within the image, so the registry accepts it (it once refused the season)."""
    from PIL import Image

    from reid.bulk.camtrap_out import _fraction_box
    from reid.registry.services import add_sighting  # noqa: F401  (the checker it must pass)

    path = tmp_path / "f.jpg"
    Image.new("RGB", (640, 480)).save(path)
    capture = Capture("f.jpg", path, "D1", None, "tiger", bbox=BBox(203.0, 171.0, 437.0, 244.0))
    cells = _fraction_box(capture)
    x, y, w, h = (float(c) for c in cells)
    assert x == pytest.approx(203 / 640, abs=1e-6) and w == pytest.approx(437 / 640, abs=2e-6)
    assert x + w <= 1.0 and y + h <= 1.0
    # the unrounded corner 0.3171875 used to be written 0.317188 next to width 0.682813
    assert not (cells[0] == "0.317188" and cells[2] == "0.682813")
