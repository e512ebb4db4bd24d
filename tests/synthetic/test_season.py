"""The synthetic season: gallery vs new individuals, bursts per camera, truth, Camtrap DP."""

from collections import Counter

import pytest

from reid.camtrap import read_package
from reid.data.manifest import read_manifest
from reid.errors import ReidError
from reid.synthetic.season import SeasonSpec, plan_season, write_season

SPEC = SeasonSpec(
    species=("leopard",), known=1, new=1, passes=2, frames_per_burst=2, gallery_per_side=1, seed=9
)


@pytest.fixture(scope="module")
def season(tmp_path_factory):
    out = tmp_path_factory.mktemp("season")
    return out, write_season(out, SPEC, workers=1)


def test_known_individuals_are_in_the_gallery_and_new_ones_are_not(season):
    out, records = season
    gallery = {r.individual_id for r in read_manifest(out / "gallery" / "manifest.csv")}
    seen = {r.individual_id for r in records}
    assert len(gallery) == SPEC.known and len(seen) == SPEC.known + SPEC.new
    assert len(seen - gallery) == SPEC.new
    assert len(records) == SPEC.frames


def test_every_burst_is_one_camera_one_side_seconds_apart(season):
    _, records = season
    bursts: dict[str, list] = {}
    for r in records:
        bursts.setdefault(r.encounter, []).append(r)
    assert Counter(len(b) for b in bursts.values()) == {SPEC.frames_per_burst: len(bursts)}
    for b in bursts.values():
        assert len({(r.camera_id, r.side, r.individual_id) for r in b}) == 1
        assert (b[-1].captured_at - b[0].captured_at).total_seconds() <= 10
        assert all(r.bbox is not None for r in b)


def test_bursts_at_one_station_are_an_hour_apart(tmp_path):
    spec = SeasonSpec(species=("tiger",), known=6, new=6, passes=6, seed=3)
    starts: dict[str, list] = {}
    for group in plan_season(tmp_path, spec):
        for f in group:
            if f.k == 0 and f.record.side == "left":
                starts.setdefault(f.station, []).append(f.record.captured_at)
    for times in starts.values():
        times.sort()
        assert all((b - a).total_seconds() >= 3500 for a, b in zip(times, times[1:], strict=False))


def test_camtrap_package_is_valid_and_agrees_with_the_manifest(season):
    out, records = season
    _, tables = read_package(out / "season")
    assert len(tables["media"]) == len(tables["observations"]) == len(records)
    assert all(o["individualID"] is None for o in tables["observations"])
    assert {d["deploymentTags"].split(":")[1] for d in tables["deployments"]} <= {"RU", "CN"}
    paths = {(out / "season" / m["filePath"]).resolve() for m in tables["media"]}
    assert paths == {r.path.resolve() for r in records}


def test_output_is_deterministic(season, tmp_path):
    out, _ = season
    again = write_season(tmp_path, SPEC, workers=1)
    first = sorted(p.relative_to(out) for p in (out / "season" / "media").rglob("*.jpg"))
    assert first == sorted(
        p.relative_to(tmp_path) for p in (tmp_path / "season" / "media").rglob("*.jpg")
    )
    assert (out / first[0]).read_bytes() == (tmp_path / first[0]).read_bytes()
    assert len(again) == SPEC.frames


def test_bad_spec_is_refused(tmp_path):
    with pytest.raises(ReidError, match="passes"):
        write_season(tmp_path, SeasonSpec(passes=0))


def test_cli_synth_season(tmp_path):
    from typer.testing import CliRunner

    from reid.cli import app

    args = [
        "synth-season",
        "--out",
        str(tmp_path),
        "--known",
        "1",
        "--new",
        "0",
        "--passes",
        "1",
        "--frames-per-burst",
        "1",
        "--workers",
        "1",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(read_manifest(tmp_path / "season.csv")) == 4  # 2 species x 1 pass x 2 sides
    assert (tmp_path / "season" / "datapackage.json").is_file()
