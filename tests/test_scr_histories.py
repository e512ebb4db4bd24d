"""Capture histories from deployments and detections (reid.scr.histories), and the secr
and camtrapR exports (reid.scr.exports) checked against the formats' documentation."""

from __future__ import annotations

import csv
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from reid.privacy import generalise
from reid.scr.exports import (
    RECORD_COLUMNS,
    camera_operation,
    secr_id,
    write_camtrapr,
    write_secr,
)
from reid.scr.histories import (
    CameraDeployment,
    Detection,
    HistoryError,
    build_history,
    laea_forward,
    laea_inverse,
    projection_for,
    read_deployments,
    shared_individuals,
)

T0 = datetime(2025, 11, 1)


def deps() -> list[CameraDeployment]:
    """Station S1 (RU): two facing cameras, 10 days; S2 (RU): one camera, days 0-3 and
    6-10 (a gap); S3 (CN): one camera, days 2-10."""
    return [
        CameraDeployment("d1a", "S1", 43.10, 131.30, T0, T0 + timedelta(days=10), "RU", "c1a"),
        CameraDeployment("d1b", "S1", 43.10, 131.30, T0, T0 + timedelta(days=10), "RU", "c1b"),
        CameraDeployment("d2", "S2", 43.15, 131.35, T0, T0 + timedelta(days=3), "RU", "c2"),
        CameraDeployment(
            "d2x", "S2", 43.15, 131.35, T0 + timedelta(days=6), T0 + timedelta(days=10), "RU", "c2"
        ),  # fmt: skip
        CameraDeployment(
            "d3", "S3", 43.12, 130.90, T0 + timedelta(days=2), T0 + timedelta(days=10), "CN", "c3"
        ),  # fmt: skip
    ]


def det(ind, day, dep, side="left", hours=12.0, linked=False) -> Detection:
    t = T0 + timedelta(days=day, hours=hours)
    return Detection(ind, t, side, dep, species="tiger", source=f"{ind}-{day}-{dep}",
                     file_path=f"/data/{dep}/{ind}_{day}.jpg", linked=linked)  # fmt: skip


def detections() -> list[Detection]:
    return [
        det("T1", 0, "d1a"), det("T1", 0, "d1b", "right", 12.01, linked=True),
        det("T1", 4, "d3", linked=True), det("T2", 1, "d2", "right"), det("T2", 7, "d2x", "right"),
        det("T3", 4, "d2"),  # S2 is in its gap on day 4: not working
        det("T4", 12, "d1a"),  # after the survey
        det("T5", 1, "nowhere"),  # unknown camera
        det("T6", 5, "d1a", "unknown"),
    ]  # fmt: skip


def test_usage_is_days_working_per_occasion_with_gaps_and_one_detector_per_station():
    b = build_history(deps(), detections(), occasion_days=5)
    d = b.history.detectors
    assert d.ids == ("S1", "S2", "S3")
    assert d.n_occasions == 2
    # two facing cameras are one detector: 5 days per occasion, not 10
    np.testing.assert_allclose(d.usage, [[5, 5], [3, 4], [3, 5]])
    assert d.country == ("RU", "RU", "CN")


def test_flank_both_joins_flanks_and_reports_what_it_cannot_use():
    b = build_history(deps(), detections(), occasion_days=5, flank="both")
    ch = b.history
    assert ch.individuals == ("T1", "T2", "T6")
    i, k = ch.individuals.index("T1"), list(ch.detectors.ids).index("S3")
    assert ch.counts[i, k].tolist() == [1, 0]  # day 4 is occasion 1
    assert ch.counts[i, 0].tolist() == [1, 0]  # left and right at S1: one proximity detection
    reasons = b.skipped_counts()
    assert reasons == {"camera not working at that time": 1, "outside the survey window": 1,
                       "no deployment for its camera": 1}  # fmt: skip
    assert b.flank_summary() == {"both_flanks": 1, "one_flank_only": 2}


def test_one_flank_keeps_that_side_only():
    b = build_history(deps(), detections(), occasion_days=5, flank="right")
    assert b.history.individuals == ("T1", "T2")
    assert b.skipped_counts()["other flank"] == 5  # T1 twice, T3, T4, T5: all left
    assert b.skipped_counts()["no flank side"] == 1


def test_count_detectors_count_independent_events():
    extra = [det("T2", 7, "d2x", "right", hours=12.2), det("T2", 7, "d2x", "right", hours=14)]
    b = build_history(deps(), detections() + extra, occasion_days=5, detector_type="count")
    i = b.history.individuals.index("T2")
    # 12:00 and 14:00 are independent, 12:12 is within 30 minutes of 12:00
    assert b.history.counts[i, 1].tolist() == [1, 2]


def test_occasions_start_at_midnight_and_the_last_may_be_short():
    b = build_history(deps(), [], occasion_days=3)
    assert b.start == T0 and b.history.detectors.n_occasions == 4
    assert b.history.occasion_labels[1] == "2025-11-04"
    assert b.history.detectors.usage[0].tolist() == [3, 3, 3, 1]


def test_shared_individuals_counts_animals_seen_in_both_countries():
    b = build_history(deps(), detections(), occasion_days=5)
    assert shared_individuals(b) == {"by_country": {"CN": 1, "RU": 3}, "in_several_countries": 1}


def test_projection_is_equal_area_and_inverts():
    # a 0.1 x 0.1 degree cell at 43 N: the area on the sphere
    lat, lon = [43.0, 43.0, 43.1, 43.1], [131.0, 131.1, 131.1, 131.0]
    xy = laea_forward(np.array(lat), np.array(lon), 43.05, 131.05)
    x, y = xy[:, 0], xy[:, 1]
    area = 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
    r = 6_371_007.2
    sphere = r**2 * np.radians(0.1) * (np.sin(np.radians(43.1)) - np.sin(np.radians(43.0)))
    assert area == pytest.approx(sphere, rel=1e-4)
    back_lat, back_lon = laea_inverse(xy, 43.05, 131.05)
    np.testing.assert_allclose(back_lat, lat, atol=1e-9)
    np.testing.assert_allclose(back_lon, lon, atol=1e-9)


def test_bad_input_is_a_clear_error(tmp_path):
    with pytest.raises(HistoryError, match="flank"):
        build_history(deps(), [], flank="top")
    with pytest.raises(HistoryError, match="at most 400"):
        build_history(deps(), [], start=datetime(1, 1, 1))
    leopard = Detection("L1", T0 + timedelta(days=1), "left", "d1a", species="leopard",
                        source="L1-1")  # fmt: skip
    with pytest.raises(HistoryError, match="several species"):
        build_history(deps(), [*detections(), leopard])
    p = tmp_path / "deployments.csv"
    p.write_text("station,lat,lon,start,end\nS1,43.1,131.3,2025-11-05,2025-11-01\n")
    with pytest.raises(HistoryError, match="ends"):
        read_deployments(p)
    p.write_text("station,lat,start,end\nS1,43.1,2025-11-01,2025-11-05\n")
    with pytest.raises(HistoryError, match="no lon column"):
        read_deployments(p)


def test_plain_and_camtrap_dp_deployments(tmp_path):
    p = tmp_path / "plain.csv"
    p.write_text("station,camera,lat,lon,start,end,country\n"
                 "S1,a,43.1,131.3,2025-11-01,2025-11-05,RU\n"
                 "S1,b,43.1,131.3,2025-11-01T00:00:00Z,2025-11-06T00:00:00Z,RU\n")  # fmt: skip
    rows = read_deployments(p)
    assert [r.station for r in rows] == ["S1", "S1"]
    assert rows[0].end == datetime(2025, 11, 6)  # a bare end date: through that day
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "deployments.csv").write_text(
        "deploymentID,locationID,latitude,longitude,deploymentStart,deploymentEnd,cameraID,"
        "deploymentTags\nd1,ST-1,43.1,131.3,2025-11-01T00:00:00Z,2025-11-05T00:00:00Z,c1,"
        "country:RU\n"
    )
    (row,) = read_deployments(pkg)
    assert (row.deployment, row.station, row.country, row.camera) == ("d1", "ST-1", "RU", "c1")


# -- exports against the formats' documentation --------------------------------------


def _build():
    return build_history(deps(), detections(), occasion_days=5, detector_type="count")


def test_secr_files_follow_read_capthist(tmp_path):
    """secr-datainput: capture lines 'Session ID Occasion Detector' (occasion from 1, a
    count repeated per detection), trap lines 'Detector x y' then one usage value per
    occasion (binary.usage = FALSE), comments start with '#', no underscores in ids."""
    b = _build()
    files = write_secr(b, tmp_path, exact=True, session="Amur 2025_26")
    capt = [
        ln.split()
        for ln in Path(files["capture"]).read_text().splitlines()
        if not ln.startswith("#")
    ]
    trap = [
        ln.split() for ln in Path(files["traps"]).read_text().splitlines() if not ln.startswith("#")
    ]
    assert all(len(r) == 4 for r in capt)
    assert {r[0] for r in capt} == {"Amur-2025-26"}
    assert len(capt) == int(b.history.counts.sum())
    assert all(1 <= int(r[2]) <= b.history.detectors.n_occasions for r in capt)
    ids = [r[0] for r in trap]
    assert {r[3] for r in capt} <= set(ids)
    assert all(len(r) == 3 + b.history.detectors.n_occasions for r in trap)
    np.testing.assert_allclose([[float(v) for v in r[3:]] for r in trap], b.history.detectors.usage)
    np.testing.assert_allclose([[float(r[1]), float(r[2])] for r in trap],
                               b.history.detectors.xy, atol=0.06)  # fmt: skip
    # rebuild the (N, K, S) array from the files: the same history
    again = np.zeros_like(b.history.counts)
    for _, ind, occ, dtr in capt:
        again[b.history.individuals.index(ind), ids.index(dtr), int(occ) - 1] += 1
    np.testing.assert_array_equal(again, b.history.counts)
    assert "binary.usage = FALSE" in Path(files["r"]).read_text()
    assert secr_id("a_b c,d") == "a-b-c-d"


def test_camtrapr_record_table_and_camera_operation(tmp_path):
    """camtrapR: recordTableIndividual columns, DateTimeOriginal '%Y-%m-%d %H:%M:%S';
    cameraOperation: stations x days, NA before set-up/after retrieval, 0 in a gap."""
    b = _build()
    files = write_camtrapr(b, tmp_path, exact=True)
    with open(files["record_table"]) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == RECORD_COLUMNS
    for col in ("Station", "Species", "DateTimeOriginal", "Date", "Time", "Individual",
                "delta.time.secs", "Directory", "FileName"):  # fmt: skip
        assert col in rows[0]
    assert len(rows) == len(b.used)
    for r in rows:
        assert datetime.strptime(r["DateTimeOriginal"], "%Y-%m-%d %H:%M:%S")
        assert r["DateTimeOriginal"] == f"{r['Date']} {r['Time']}"
    t2 = [r for r in rows if r["Individual"] == "T2"]
    assert float(t2[1]["delta.time.days"]) == 6.0
    with open(files["camera_operation"]) as f:
        op = list(csv.reader(f))
    header, body = op[0], {r[0]: r[1:] for r in op[1:]}
    assert header[0] == "" and header[1] == "2025-11-01" and len(header) == 11
    assert body["S2"][:8] == ["1", "1", "1", "0", "0", "0", "1", "1"]
    assert body["S3"][:3] == ["NA", "NA", "1"]
    assert body["S1"] == ["1"] * 10
    days, cells = camera_operation(b)
    assert len(days) == 10 and len(cells) == 3


def test_generalised_exports_hide_station_places_and_codes(tmp_path):
    """A reader without the precise-location permission: no station code, no camera, no
    directory, and every coordinate in the files is a 0.25 degree cell centre."""
    b = _build()
    files = {**write_secr(b, tmp_path, exact=False), **write_camtrapr(b, tmp_path, exact=False)}
    text = "".join(Path(p).read_text() for p in files.values())
    for code in ("S1", "S2", "S3", "c1a", "c2", "/data/", "T1_0.jpg"):
        assert code not in text
    trap = [
        ln.split() for ln in Path(files["traps"]).read_text().splitlines() if not ln.startswith("#")
    ]
    cells = {generalise(s.lat, s.lon) for s in b.stations}
    xy = {(round(float(r[1]), 1), round(float(r[2]), 1)) for r in trap}
    # projected about the cells' own middle: nothing of the exact stations' middle
    lats, lons = [c[0] for c in cells], [c[1] for c in cells]
    proj = projection_for(lats, lons)
    assert (proj.lat0, proj.lon0) == ((min(lats) + max(lats)) / 2, (min(lons) + max(lons)) / 2)
    expect = {tuple(np.round(proj.forward(lat, lon)[0], 1)) for lat, lon in cells}
    assert xy == expect
    with open(files["stations"]) as f:
        for r in csv.DictReader(f):
            assert (float(r["lat"]), float(r["lon"])) in cells


def test_season_run_encounters_as_detections(tmp_path):
    """A catalogue match is that animal (both flanks known); a new encounter is its
    proposed individual (one flank), else its own; undecodable ones are left out."""
    from reid.bulk.run import ENCOUNTER_COLUMNS
    from reid.bulk.sources import write_csv
    from reid.scr.histories import detections_from_run

    base = dict.fromkeys(ENCOUNTER_COLUMNS, "")
    rows = [
        {**base, "encounter": "e1", "deployment": "d1a", "species": "tiger", "side": "left",
         "start": "2025-11-01T12:00:00Z", "decision": "known", "individual": "T-1"},
        {**base, "encounter": "e2", "deployment": "d1b", "species": "tiger", "side": "unknown",
         "matched_side": "right", "start": "2025-11-01T12:00:05Z", "decision": "known",
         "individual": "T-1"},
        {**base, "encounter": "e3", "deployment": "d3", "species": "tiger", "side": "left",
         "start": "2025-11-04T01:00:00Z", "decision": "new", "proposed_individual": "NEW-x-T-001"},
        {**base, "encounter": "e4", "deployment": "d3", "species": "tiger", "side": "left",
         "start": "2025-11-05T01:00:00Z", "decision": "new"},
        {**base, "encounter": "e5", "deployment": "d3", "species": "tiger", "side": "left",
         "start": "2025-11-05T02:00:00Z", "decision": "unreadable"},
        {**base, "encounter": "e6", "deployment": "d3", "species": "leopard", "side": "left",
         "start": "2025-11-05T03:00:00Z", "decision": "known", "individual": "L-1"},
    ]  # fmt: skip
    write_csv(tmp_path / "encounters.csv", ENCOUNTER_COLUMNS, rows)
    dets = detections_from_run(tmp_path, "tiger")
    assert [(d.individual, d.side, d.linked) for d in dets] == [
        ("T-1", "left", True), ("T-1", "right", True), ("NEW-x-T-001", "left", False),
        ("e4", "left", False),
    ]  # fmt: skip
    b = build_history(deps(), dets, occasion_days=5)
    assert b.history.individuals == ("NEW-x-T-001", "T-1", "e4")
    assert b.flank_summary() == {"both_flanks": 1, "one_flank_only": 2}
    assert "2 individuals are known from one flank only" in b.flank_warning()
    assert build_history(deps(), dets, flank="left").flank_warning() is None
    with pytest.raises(HistoryError, match="encounters.csv"):
        detections_from_run(tmp_path / "nothing")


def test_detections_csv_round_trip(tmp_path):
    from reid.scr.histories import read_detections, write_detections

    path = write_detections(tmp_path / "d.csv", detections())
    again = read_detections(path)
    assert [(d.individual, d.time, d.side, d.deployment, d.linked) for d in again] == [
        (d.individual, d.time, d.side, d.deployment, d.linked) for d in detections()
    ]
    path.write_text("individual,time,camera,side\nT1,2025-11-01T00:00:00Z,d1a,top\n")
    with pytest.raises(HistoryError, match="side 'top'"):
        read_detections(path)


def test_registry_cameras_of_a_site_within_the_radius_are_one_station(tmp_path):
    from reid.registry import Registry, ensure_deployment, ensure_organisation, ensure_site
    from reid.scr.histories import deployments_from_registry

    reg = Registry(f"sqlite:///{tmp_path / 'r.sqlite'}")
    end = T0 + timedelta(days=10)
    with reg.session() as s:
        org = ensure_organisation(s, "RUO", "RU")
        site = ensure_site(s, "kp", "RU", 43.1, 131.3, organisation=org)
        ensure_deployment(s, "a", site, 43.1, 131.3, "cam-a", T0, end)
        ensure_deployment(s, "b", site, 43.1001, 131.3001, "cam-b", T0, end)  # ~14 m away
        ensure_deployment(s, "c", site, 43.11, 131.3, "cam-c", T0, end)  # ~1.1 km away
        other = ensure_site(s, "x", "RU", 43.2, 131.2)  # no organisation
        ensure_deployment(s, "d", other, 43.2, 131.2, "cam-d", T0, end)
        ensure_deployment(s, "e", other, 43.2, 131.2, "cam-e")  # no dates
    with reg.session() as s:
        rows = deployments_from_registry(s, owners={"RUO"})
        with pytest.raises(HistoryError, match="no start or end"):
            deployments_from_registry(s)
    reg.close()
    assert {r.deployment: r.station for r in rows} == {"a": "kp", "b": "kp", "c": "kp#2"}
    assert build_history(rows, []).history.detectors.ids == ("kp", "kp#2")


def test_generalised_projection_is_centred_on_the_cells_not_the_stations(tmp_path):
    """The exact stations' middle (43.135, 131.135) must not be recoverable from a
    generalised trap file: it is projected about the cells' middle (43.125, 131.125)."""
    moved = [
        CameraDeployment(d.deployment, d.station, d.lat + 0.01, d.lon + 0.01, d.start, d.end,
                         d.country, d.camera)
        for d in deps()
    ]  # fmt: skip
    b = build_history(moved, [], occasion_days=5)
    assert (b.projection.lat0, b.projection.lon0) == (43.135, 131.135)
    files = write_secr(b, tmp_path, exact=False)
    trap = [ln.split() for ln in Path(files["traps"]).read_text().splitlines() if ln[0] != "#"]
    proj = projection_for([43.125], [131.125])
    lat, lon = generalise(43.11, 131.31)
    x, y = proj.forward(lat, lon)[0]
    # (rows are listed by cell, then a keyed hash: find the station's cell among them)
    assert [round(x, 1), round(y, 1)] in [[float(v) for v in t[1:3]] for t in trap]


def test_generalised_detectors_are_not_listed_in_station_code_order(tmp_path):
    """Station codes may spell places (``st_43.3640_131.1758``): a generalised export
    numbered and listed its detectors in code order, so within a shared grid cell the
    numbers sorted the stations by their exact latitude."""
    from reid.scr.exports import detector_names, detector_order, write_camtrapr

    stations = [(f"st_43.{1300 + i:04d}_131.1100", 43.13 + i / 10_000, 131.11) for i in range(12)]
    rows = [CameraDeployment(f"dep-{code}", code, la, lo, T0, T0 + timedelta(days=30), "RU",
                             f"cam-{i}")  # fmt: skip
            for i, (code, la, lo) in enumerate(stations)]
    b = build_history(rows, [], occasion_days=5)
    order = detector_order(b, exact=False)
    assert order != list(range(len(stations)))  # by a keyed hash within the one cell
    names = detector_names(b, exact=False)
    assert sorted(names) == [f"D{k + 1:03d}" for k in range(len(stations))]
    assert [names[k] for k in order] == sorted(names)
    files = write_secr(b, tmp_path / "secr", exact=False)
    trap = [ln.split()[0] for ln in Path(files["traps"]).read_text().splitlines()
            if ln[0] != "#"]  # fmt: skip
    assert trap == sorted(trap)  # rows in number order, which is not the codes' order
    ct = write_camtrapr(b, tmp_path / "camtrapr", exact=False)["stations"]
    text = Path(ct).read_text() + Path(files["traps"]).read_text()
    assert "43.13" not in text and "st_" not in text
    assert detector_order(b, exact=True) == list(range(len(stations)))
