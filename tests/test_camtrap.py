"""Camtrap DP: export then import gives the same records; a bad package is refused whole."""

import csv
import hashlib
import json

import pytest
from sqlalchemy import func, select

from reid.camtrap import CamtrapError, import_package, read_package, species_of, write_package
from reid.privacy import LOCAL_ADMIN, PUBLIC
from reid.registry import Registry, list_sightings
from reid.registry.models import Deployment, Media, Sighting, Site
from tests.registry.helpers import sight, tiger, world


def _fill(s):
    w = world(s)
    a, b = tiger(s, "T-A", w["np"]), tiger(s, "T-B", w["in"])
    a.sex = "female"
    sight(s, w, a, "NP", 0, side="left")
    sight(s, w, a, "IN", 3, side="right")
    sight(s, w, b, "IN", 4, status="proposed")


def _snapshot(s):
    return [
        (v.code, v.individual, v.species, v.side, v.status, v.captured_at, v.country, v.site,
         v.protected_area, v.lat, v.lon, v.media, v.file_path, v.box)
        for v in list_sightings(s, LOCAL_ADMIN)
    ]  # fmt: skip


def test_round_trip_gives_the_same_records(registry, tmp_path):
    with registry.session() as s:
        _fill(s)
        before = _snapshot(s)
        write_package(s, tmp_path / "pkg", LOCAL_ADMIN)
    descriptor, tables = read_package(tmp_path / "pkg")
    assert descriptor["profile"].endswith("camtrap-dp/1.0/camtrap-dp-profile.json")
    assert len(tables["observations"]) == 3
    other = Registry(f"sqlite:///{tmp_path / 'other.sqlite'}")
    with other.session() as s:
        stats = import_package(s, tmp_path / "pkg", decided_by="importer")
        assert (stats.deployments, stats.media, stats.sightings, stats.individuals) == (2, 3, 3, 2)
        assert _snapshot(s) == before
    with other.session() as s:  # importing again adds nothing
        assert import_package(s, tmp_path / "pkg", decided_by="importer").sightings == 0


def test_generalised_export_hides_the_camera(registry, tmp_path):
    with registry.session() as s:
        _fill(s)
        write_package(s, tmp_path / "pkg", PUBLIC)
    with open(tmp_path / "pkg" / "deployments.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {(r["latitude"], r["longitude"]) for r in rows} == {("28.375", "81.375"),
                                                             ("28.375", "81.125")}
    assert all(int(r["coordinateUncertainty"]) > 10_000 for r in rows)
    assert "28.4012" not in (tmp_path / "pkg" / "deployments.csv").read_text()


def _break(pkg, table, line, field, value):
    path = pkg / f"{table}.csv"
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
        header = list(rows[0])
    rows[line - 2][field] = value
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, header)
        w.writeheader()
        w.writerows(rows)


@pytest.mark.parametrize(
    ("table", "line", "field", "value", "message"),
    [
        ("observations", 4, "bboxX", "1.5", "observations.csv:4: field 'bboxX': 1.5 is above 1"),
        ("media", 3, "timestamp", "yesterday", "media.csv:3: field 'timestamp'"),
        ("deployments", 2, "latitude", "", "deployments.csv:2: field 'latitude': is required"),
        ("observations", 3, "mediaID", "nope", "observations.csv:3: field 'mediaID': 'nope'"),
        ("observations", 2, "observationType", "ghost", "observations.csv:2: field 'observ"),
    ],
)  # fmt: skip
def test_invalid_package_is_rejected_and_nothing_imported(
    registry, tmp_path, table, line, field, value, message
):
    with registry.session() as s:
        _fill(s)
        write_package(s, tmp_path / "pkg", LOCAL_ADMIN)
    _break(tmp_path / "pkg", table, line, field, value)
    other = Registry(f"sqlite:///{tmp_path / 'other.sqlite'}")
    with pytest.raises(CamtrapError) as err, other.session() as s:
        import_package(s, tmp_path / "pkg", decided_by="importer")
    assert message in str(err.value)
    with other.session() as s:
        assert s.scalar(select(func.count()).select_from(Sighting)) == 0


def test_late_error_rolls_back_rows_already_added(tmp_path, registry):
    with registry.session() as s:
        _fill(s)
        write_package(s, tmp_path / "pkg", LOCAL_ADMIN)
    # valid row by row, but the last observation names a leopard as a tiger's individual
    _break(tmp_path / "pkg", "observations", 4, "individualID", "T-A")
    _break(tmp_path / "pkg", "observations", 4, "scientificName", "Panthera pardus")
    other = Registry(f"sqlite:///{tmp_path / 'other.sqlite'}")
    with pytest.raises(CamtrapError, match=r"observations.csv:4: individual T-A is a tiger"), \
            other.session() as s:  # fmt: skip
        import_package(s, tmp_path / "pkg", decided_by="importer")
    with other.session() as s:
        assert s.scalar(select(func.count()).select_from(Sighting)) == 0


def test_subspecies_names_are_tigers_and_leopards():
    assert species_of("Panthera tigris altaica") == "tiger"
    assert species_of("panthera pardus orientalis") == "leopard"
    assert species_of("Panthera leo") is None and species_of(None) is None


def test_missing_descriptor_is_named(tmp_path):
    (tmp_path / "pkg").mkdir()
    with pytest.raises(CamtrapError, match="datapackage.json: missing"):
        read_package(tmp_path / "pkg")
    (tmp_path / "pkg" / "datapackage.json").write_text(json.dumps({"resources": []}))
    with pytest.raises(CamtrapError, match="no 'deployments' resource"):
        read_package(tmp_path / "pkg")


def test_a_site_code_that_holds_coordinates_is_stored_under_an_opaque_code(registry, tmp_path):
    """Site codes are shown to every reader (partners, generalised exports): a package
    whose site is named by its position gets a stable opaque code, not that name."""
    with registry.session() as s:
        _fill(s)
        write_package(s, tmp_path / "pkg", LOCAL_ADMIN)
    path = tmp_path / "pkg" / "deployments.csv"
    path.write_text(path.read_text().replace("bardia-1", "27.5123_84.2611"))
    other = Registry(f"sqlite:///{tmp_path / 'other.sqlite'}")
    with other.session() as s:
        stats = import_package(s, tmp_path / "pkg", decided_by="importer")
        assert stats.renamed_sites == 1 and stats.sightings == 3
        sites = {v.site for v in list_sightings(s, LOCAL_ADMIN)}
        assert "katarniaghat-1" in sites
        (opaque,) = sites - {"katarniaghat-1"}
        assert opaque.startswith("DNPWC:NP:site-") and "27.51" not in opaque
        # random, not a hash of the name (a reader who sees the cell could search those)
        assert hashlib.sha256(b"27.5123_84.2611").hexdigest()[:10] not in opaque
        n_sites = s.scalar(select(func.count()).select_from(Site))
    with other.session() as s:  # the same package again: its site found by its place
        again = import_package(s, tmp_path / "pkg", decided_by="importer")
        assert (again.sightings, again.deployments) == (0, 0)
        assert {v.site for v in list_sightings(s, LOCAL_ADMIN)} == sites
        assert s.scalar(select(func.count()).select_from(Site)) == n_sites
    # a second package with another deployment at that place lands at the same site
    path.write_text(path.read_text().replace("dep-np", "dep-np-2"))
    for table in ("media", "observations"):
        p = tmp_path / "pkg" / f"{table}.csv"
        p.write_text(p.read_text().replace("dep-np", "dep-np-2"))
    with other.session() as s:
        import_package(s, tmp_path / "pkg", decided_by="importer")
        assert s.scalar(select(func.count()).select_from(Site)) == n_sites


def test_a_generalised_export_names_no_place_in_its_codes(registry, tmp_path):
    """Deployment, site and camera codes and file paths that spell a position are written
    as opaque names, consistently across the tables, for a reader without exact places."""
    with registry.session() as s:
        _fill(s)
        dep = s.scalar(select(Deployment).where(Deployment.code == "dep-np"))
        dep.code, dep.camera_id = "cam_28.4012_81.3021", "28.4012-81.3021"
        dep.site.code = "28.4012_81.3021"
        for m in s.scalars(select(Media).where(Media.deployment_id == dep.id)):
            m.file_path = "/season/28.4012_81.3021/IMG_0001.JPG"
        s.flush()
        write_package(s, tmp_path / "public", PUBLIC)
        write_package(s, tmp_path / "exact", LOCAL_ADMIN)
    public = "".join(p.read_text() for p in (tmp_path / "public").glob("*.csv"))
    assert "28.40" not in public and "81.30" not in public
    exact = "".join(p.read_text() for p in (tmp_path / "exact").glob("*.csv"))
    assert "cam_28.4012_81.3021" in exact
    _descriptor, tables = read_package(tmp_path / "public")
    deps = {r["deploymentID"] for r in tables["deployments"]}
    assert any(d.startswith("deployment-") for d in deps) and "dep-in" in deps
    assert all(r["filePath"].startswith("media/") for r in tables["media"])
    assert {r["deploymentID"] for r in tables["media"]} <= deps
    assert {r["deploymentID"] for r in tables["observations"]} <= deps


def test_photo_and_observation_ids_that_spell_a_place_get_random_codes(registry, tmp_path):
    """``reid bulk`` names photos and encounters after their folders
    (``<tag>-cam_27.5123_84.2611@<time>``); such IDs are not kept as registry codes, which
    partners see (a sighting's code), and a re-import still adds nothing."""
    with registry.session() as s:
        _fill(s)
        write_package(s, tmp_path / "pkg", LOCAL_ADMIN)
    for table in ("media", "observations"):
        p = tmp_path / "pkg" / f"{table}.csv"
        with open(p, newline="") as f:
            rows = list(csv.DictReader(f))
        for r in rows:
            for key in ("mediaID", "observationID"):
                if key in r:
                    r[key] = f"s1-cam_27.5123_84.2611@{r[key]}"
        with open(p, "w", newline="") as f:
            w = csv.DictWriter(f, list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    other = Registry(f"sqlite:///{tmp_path / 'other.sqlite'}")
    with other.session() as s:
        stats = import_package(s, tmp_path / "pkg", decided_by="importer")
        assert (stats.media, stats.sightings) == (3, 3)
        codes = [(v.code, v.media) for v in list_sightings(s, LOCAL_ADMIN)]
        assert len(codes) == 3 and not any("27.51" in c or "27.51" in m for c, m in codes)
    with other.session() as s:
        again = import_package(s, tmp_path / "pkg", decided_by="importer")
        assert (again.media, again.sightings) == (0, 0)
        assert s.scalar(select(func.count()).select_from(Sighting)) == 3


def test_a_generalised_export_lists_deployments_in_no_order_of_their_codes(registry, tmp_path):
    """Eight cameras in one grid cell, coded by their place: listed by code (or in the
    order they were made, usually the same), the rows would rank them by latitude."""
    from reid.registry import ensure_deployment, ensure_site

    with registry.session() as s:
        site = ensure_site(s, "block-7", "NP", 27.51, 84.26)
        codes = [f"cam_27.{5110 + i:04d}_84.2611" for i in range(8)]
        for code in codes:
            ensure_deployment(s, code, site, float(code[4:11]), 84.2611)
        write_package(s, tmp_path / "public", PUBLIC)
    _descriptor, tables = read_package(tmp_path / "public")
    listed = [r["deploymentID"] for r in tables["deployments"]]
    assert len(listed) == 8 and all(d.startswith("deployment-") for d in listed)
    assert listed != [PUBLIC.shown_code(c, "deployment") for c in codes]  # 1 in 40,320
