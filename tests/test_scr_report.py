"""The population assessment end to end on a synthetic survey: assessment, report
(privacy: nothing finer than the 0.25 degree grid unless --exact), the CLI and the
registry as a source."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from reid.cli import app
from reid.privacy import generalise
from reid.scr.assess import assess
from reid.scr.histories import (
    build_history,
    deployments_from_registry,
    detections_from_registry,
    write_deployments,
    write_detections,
)
from reid.scr.report import write_report
from reid.scr.survey import load_registry, simulate_detections, survey_layout


@pytest.fixture(scope="module")
def survey():
    deps = survey_layout(6, 4, 4000, days=40, seed=3)
    return simulate_detections(deps, density_per_100km2=2.0, sigma_m=5000, g0=0.06, seed=3)


@pytest.fixture(scope="module")
def assessment(survey):
    b = build_history(survey.deployments, survey.detections, occasion_days=5, flank="left")
    return assess(b, buffer_m=20_000, spacing_m=2_500, land_only=False)


def test_layout_spans_the_border(survey):
    countries = {d.country for d in survey.deployments}
    assert countries == {"CN", "RU"}
    stations = {d.station for d in survey.deployments}
    assert len(stations) == 24
    # two facing cameras per station, one flank each per pass
    assert {d.side for d in survey.detections} == {"left", "right"}


def test_assessment_estimates_jointly_and_per_country(survey, assessment):
    a = assessment
    assert set(a.transboundary.by_country) | set(a.transboundary.not_fitted) == {"CN", "RU"}
    j = a.joint
    lo, hi = j.density_ci
    assert lo < j.density_per_100km2 < hi
    assert j.n_individuals == a.history.n_individuals > 0
    # the centres are posterior means over the mask: inside the mask's extent
    assert a.centres_xy.shape == (a.history.n_individuals, 2)
    assert np.all(a.centres_xy.min(axis=0) >= a.mask.xy.min(axis=0) - a.spacing_m)
    d = a.to_dict()
    assert d["n_shared"] == a.transboundary.n_shared
    assert json.dumps(d)  # JSON-able


def _numbers(text: str) -> set[str]:
    return set(re.findall(r"-?\d+\.\d{3,}", text))


def test_report_generalised_shows_no_exact_place(tmp_path, survey, assessment):
    page = write_report(assessment, tmp_path / "shared", exact=False, species="tiger")
    html = page.read_text()
    assert "generalised to 0.25° grid" in html
    assert "EXACT LOCATIONS" not in html
    for d in survey.deployments:
        assert d.station not in html
        assert (d.camera or "") not in html
    exact = set()
    for d in survey.deployments:
        exact |= {f"{d.lat:.6f}", f"{d.lon:.6f}", f"{d.lat:.4f}", f"{d.lon:.4f}"}
    for lat, lon in assessment.centres_latlon():
        exact |= {f"{lat:.4f}", f"{lon:.4f}"}
    assert not (exact & _numbers(html))
    assert (tmp_path / "shared" / "population-map.png").stat().st_size > 10_000
    # nothing measured on the exact cameras: mask area, mask cells, the M0 area (hull +
    # half the MMDM), exact abundance (density x exact area) or sigma to the metre
    joint, ns = assessment.joint, assessment.nonspatial
    derived = {f"{joint.mask_area_km2:.0f}", f"{assessment.mask.area_km2:.0f}",
               str(assessment.mask.n_cells), f"{joint.abundance:.1f}",
               f"{joint.sigma_m / 1000:.2f}"}  # fmt: skip
    if ns is not None and ns.area_km2:
        derived |= {f"{ns.area_km2:.0f}"}
    assert not (derived & _numbers(html)), derived & _numbers(html)
    assert "withheld" in html


def test_report_exact_says_so(tmp_path, assessment):
    html = write_report(assessment, tmp_path / "own", exact=True).read_text()
    assert "EXACT LOCATIONS" in html and "Density and abundance" in html


def test_generalised_map_differs_from_exact(tmp_path, assessment):
    from reid.scr.popmap import draw_population_map

    a = draw_population_map(tmp_path / "a.png", assessment, exact=True, title="t").read_bytes()
    b = draw_population_map(tmp_path / "b.png", assessment, exact=False, title="t").read_bytes()
    assert a != b
    cells = {generalise(s.lat, s.lon) for s in assessment.build.stations}
    assert len(cells) < len(assessment.build.stations)  # several stations share a cell


def test_cli_population_commands(tmp_path, survey):
    deps = write_deployments(tmp_path / "deployments.csv", survey.deployments)
    dets = write_detections(tmp_path / "detections.csv", survey.detections)
    src = ["--detections", str(dets), "--deployments", str(deps), "--occasion-days", "5"]
    runner = CliRunner()
    r = runner.invoke(app, ["population", "histories", *src, "--flank", "left", "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert s["flank"] == "left" and s["skipped"]["other flank"] > 0
    assert s["detectors"] == 24 and s["occasions"] == 8
    export = ["population", "export", "secr", "--out", str(tmp_path / "secr"), *src]
    # an export says which places it holds: no default to exact camera places
    r = runner.invoke(app, export)
    assert r.exit_code == 2 and "--exact" in r.output and "--generalise" in r.output
    assert not (tmp_path / "secr").exists()
    r = runner.invoke(app, [*export, "--exact", "--generalise"])
    assert r.exit_code == 2
    r = runner.invoke(app, [*export, "--exact"])
    assert r.exit_code == 0, r.output
    assert "EXACT locations: do not share" in r.output
    assert (tmp_path / "secr" / "trap.txt").is_file()
    r = runner.invoke(app, [*export, "--generalise"])
    assert r.exit_code == 0 and "generalised" in r.output and "EXACT" not in r.output
    args = [*src, "--flank", "left", "--buffer-km", "20", "--spacing-km", "2.5", "--no-land-only"]
    r = runner.invoke(app, ["population", "estimate", *args, "--json"])
    assert r.exit_code == 0, r.output
    est = json.loads(r.output)
    assert est["joint"]["density_per_100km2"] > 0
    r = runner.invoke(app, ["population", "report", "--out", str(tmp_path / "rep"), *args])
    assert r.exit_code == 0, r.output
    assert "generalised" in r.output
    # bad input: one line, exit 2
    r = runner.invoke(app, ["population", "histories", "--detections", str(dets)])
    assert r.exit_code == 2 and "needs --deployments" in r.output
    r = runner.invoke(app, ["population", "histories", *src, "--flank", "top"])
    assert r.exit_code == 2 and "flank" in r.output


def test_registry_source_matches_the_csv_source(tmp_path, survey):
    from reid.registry import Registry

    reg = Registry(f"sqlite:///{tmp_path / 'r.sqlite'}")
    with reg.session() as s:
        n = load_registry(s, survey, {"RU": "RU-ORG", "CN": "CN-ORG"})
    assert n == len(survey.detections)
    with reg.session() as s:
        deps = deployments_from_registry(s)
        dets = detections_from_registry(s, "tiger")
        ru_only = deployments_from_registry(s, owners={"RU-ORG"})
    reg.close()
    a = build_history(deps, dets, occasion_days=5, flank="left").history
    b = build_history(survey.deployments, survey.detections, occasion_days=5, flank="left")
    b = b.history
    assert a.individuals == b.individuals
    np.testing.assert_array_equal(a.counts, b.counts)
    np.testing.assert_allclose(a.detectors.usage, b.detectors.usage)
    assert {d.country for d in ru_only} == {"RU"}


def test_habitat_polygon_clips_the_mask(survey):
    """A GeoJSON habitat (lon/lat) west of 131.2 E keeps only mask cells inside it."""
    b = build_history(survey.deployments, survey.detections, occasion_days=5, flank="left")
    lon0, lon1 = 130.5, 131.2
    habitat = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[
        [lon0, 42.8], [lon1, 42.8], [lon1, 44.0], [lon0, 44.0], [lon0, 42.8]]]}}  # fmt: skip
    a = assess(b, buffer_m=20_000, spacing_m=2_500, habitat=habitat)
    lat, lon = b.projection.inverse(a.mask.xy)
    assert lon.max() <= lon1 + 0.01 and lon.min() >= lon0 - 0.01
    full = assess(b, buffer_m=20_000, spacing_m=2_500, land_only=False)
    assert a.mask.n_cells < full.mask.n_cells
    from reid.scr.data import ScrDataError

    with pytest.raises(ScrDataError, match="GeoJSON"):
        assess(b, habitat={"type": "Point"})


def test_generalised_report_rewrites_the_buffer_warning(tmp_path, assessment):
    """The buffer warning gives 3 sigma to 0.1 km: not on a shareable page."""
    import dataclasses

    warned = dataclasses.replace(
        assessment,
        warnings=[*assessment.warnings, "the mask buffer (20 km) is under 3 sigma (21.3 km): "
                  "widen it (--buffer-km) and refit"],
    )  # fmt: skip
    shared = write_report(warned, tmp_path / "shared", exact=False).read_text()
    assert "21.3 km" not in shared and "the mask buffer is under 3 sigma" in shared
    own = write_report(warned, tmp_path / "own", exact=True).read_text()
    assert "21.3 km" in own
    assert "21.3" not in json.dumps(warned.to_dict(exact=False))
