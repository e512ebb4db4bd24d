"""Season runs end to end with the real matcher: outputs, accuracy, and crash safety."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from reid.bulk import BulkOptions, run_bulk
from reid.bulk.journal import JOURNAL_FILE
from reid.cli import app
from reid.errors import ReidError
from reid.synthetic.season import score_run


def rows(run_dir):
    with (run_dir / "encounters.csv").open() as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def reference(season, gallery, release, tmp_path_factory):
    run = tmp_path_factory.mktemp("reference")
    opts = BulkOptions(model=release, batch_size=2, screen=0.0, show_progress=False)
    summary = run_bulk(season / "season", gallery, run, opts)
    return run, summary


def test_outputs_of_a_season_run(season, reference, spec):
    SPEC = spec
    run, summary = reference
    table = rows(run)
    bursts = SPEC.passes * 2 * (SPEC.known + SPEC.new)
    assert summary.complete and summary.encounters == len(table) == bursts
    assert 0.0 < summary.network_s < summary.seconds  # the local engine times its network
    assert sorted(r["encounter"] for r in table) == sorted({r["encounter"] for r in table})
    assert all(r["decision"] in ("known", "new") for r in table)
    for r in table:
        assert len(r["media"].split("|")) == int(r["frames"]) == SPEC.frames_per_burst
        assert 0.0 <= float(r["probability"]) <= 1.0
        assert bool(r["proposed_individual"]) == (r["decision"] == "new")
    score = score_run(season, run)
    assert score["correct"] >= 0.75  # SIFT verification carries a random tiny model here
    html = (run / "report.html").read_text()
    assert "Cross-border movements" in html and "Proposed new individuals" in html
    assert (run / "map.png").stat().st_size > 1000
    with (run / "camtrap-dp" / "observations.csv").open() as f:
        obs = list(csv.DictReader(f))
    assert len(obs) == summary.frames and all(o["individualID"] for o in obs)
    assert {o["classificationMethod"] for o in obs} == {"machine"}
    media = (run / "camtrap-dp" / "media.csv").read_text().splitlines()[1].split(",")
    assert (run / "camtrap-dp" / media[4]).resolve().is_file()  # filePath still resolves


def test_sightings_are_loaded_into_the_registry_as_proposed(
    season, gallery, release, reference, tmp_path
):
    from sqlalchemy import select

    from reid.bulk.run import load_registry
    from reid.match import Matcher
    from reid.registry import Registry
    from reid.registry.models import Sighting

    run, summary = reference
    url = f"sqlite:///{tmp_path / 'registry.sqlite'}"
    matcher = Matcher.open(gallery, model=release)
    for _ in range(2):  # loading twice adds nothing the second time
        load_registry(run, url, matcher)
    reg = Registry(url)
    with reg.session() as s:
        sightings = s.scalars(select(Sighting)).all()
        assert len(sightings) == summary.frames
        assert {x.status for x in sightings} == {"proposed"}
        assert all(x.individual_id is not None for x in sightings)
    reg.close()


def test_observations_whose_images_did_not_decode_are_not_loaded(
    gallery, release, reference, tmp_path
):
    from sqlalchemy import select

    from reid.bulk.run import load_registry
    from reid.match import Matcher
    from reid.registry import Registry
    from reid.registry.models import Sighting

    run, summary = reference
    with (run / "camtrap-dp" / "observations.csv").open() as f:
        first = next(csv.DictReader(f))["observationID"]
    url = f"sqlite:///{tmp_path / 'registry.sqlite'}"
    text = load_registry(run, url, Matcher.open(gallery, model=release), skip=frozenset({first}))
    assert f"{summary.frames - 1} sightings" in text
    reg = Registry(url)
    with reg.session() as s:
        assert first not in set(s.scalars(select(Sighting.code)))
    reg.close()


def test_rerun_of_a_finished_run_does_nothing(season, gallery, release, reference):
    run, _ = reference
    before = rows(run)
    again = run_bulk(
        season / "season",
        gallery,
        run,
        BulkOptions(model=release, batch_size=2, screen=0.0, show_progress=False),
    )
    assert again.matched_now == 0 and rows(run) == before


def test_resume_refuses_another_season(season, gallery, release, reference):
    run, _ = reference
    with pytest.raises(ReidError, match="another"):
        run_bulk(
            season / "season",
            gallery,
            run,
            BulkOptions(model=release, gap_s=1.0, show_progress=False),
        )


def test_screening_decides_sure_encounters_unverified(
    season, gallery, release, reference, tmp_path
):
    """Every encounter of the reference run is verified (screening off); a screen no more
    demanding than a three-way guess (1/3) decides every encounter on the embedding alone,
    says so in encounters.csv, and is a setting the journal holds to."""
    run, _ = reference
    assert {r["verified"] for r in rows(run)} == {"yes"}
    screened = tmp_path / "screened"
    opts = BulkOptions(model=release, batch_size=2, screen=0.3, report=False, show_progress=False)
    summary = run_bulk(season / "season", gallery, screened, opts)
    table = rows(screened)
    assert summary.complete and len(table) == len(rows(run))
    assert {r["verified"] for r in table} == {"no"}
    assert all(r["decision"] in ("known", "new") for r in table)
    with pytest.raises(ReidError, match="another settings"):
        run_bulk(season / "season", gallery, run, opts)
    with pytest.raises(ReidError, match="screening confidence"):
        run_bulk(season / "season", gallery, tmp_path / "bad", BulkOptions(screen=1.0))


def test_expected_share_of_new_animals_is_a_setting_of_the_run(
    season, gallery, release, reference, tmp_path
):
    """A season that expects almost only new animals calls at least as many encounters new
    as the reference run, with P(new) never lower; the journal holds the run to it."""
    run, _ = reference
    opts = BulkOptions(
        model=release, batch_size=2, new_prior=0.95, screen=0.0, report=False, registry=None,
        show_progress=False,
    )  # fmt: skip
    summary = run_bulk(season / "season", gallery, tmp_path / "mostly-new", opts)
    ref = {r["encounter"]: r for r in rows(run)}
    table = rows(tmp_path / "mostly-new")
    assert summary.complete and len(table) == len(ref)
    assert sum(r["decision"] == "new" for r in table) >= sum(
        r["decision"] == "new" for r in ref.values()
    )
    for r in table:
        if r["decision"] == ref[r["encounter"]]["decision"] == "new":
            assert float(r["probability"]) >= float(ref[r["encounter"]]["probability"]) - 1e-6
    with pytest.raises(ReidError, match="another settings"):
        run_bulk(season / "season", gallery, run, opts)
    with pytest.raises(ReidError, match="share of new individuals"):
        run_bulk(season / "season", gallery, tmp_path / "bad", BulkOptions(new_prior=1.0))


def test_one_verified_frame_per_burst_is_a_setting_of_the_run(
    season, gallery, release, reference, tmp_path, monkeypatch
):
    """Verifying only each burst's best frame (the season default) extracts keypoints of
    one frame per verified encounter, and the journal holds the run to it."""
    from reid import match as match_module

    calls = []
    extract = match_module.extract

    def counting(image, config):
        calls.append(1)
        return extract(image, config)

    run, _ = reference
    opts = BulkOptions(
        model=release, batch_size=2, screen=0.0, verify_frames=1, report=False, registry=None,
        show_progress=False,
    )  # fmt: skip
    monkeypatch.setattr(match_module, "extract", counting)
    summary = run_bulk(season / "season", gallery, tmp_path / "one", opts)
    monkeypatch.undo()
    table = rows(tmp_path / "one")
    assert summary.complete and len(table) == len(rows(run)) == len(calls)  # one frame each
    assert {r["verified"] for r in table} == {"yes"}
    two = BulkOptions(
        model=release, batch_size=2, screen=0.0, verify_frames=2, report=False, registry=None,
        show_progress=False,
    )  # fmt: skip
    with pytest.raises(ReidError, match="another settings"):
        run_bulk(season / "season", gallery, tmp_path / "one", two)
    with pytest.raises(ReidError, match="verified frames"):
        run_bulk(season / "season", gallery, tmp_path / "bad", BulkOptions(verify_frames=0))


@pytest.mark.slow
def test_kill_9_then_resume_equals_an_uninterrupted_run(
    season, gallery, release, reference, tmp_path
):
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "reid.cli",
        "bulk",
        str(season / "season"),
        "--index",
        str(gallery),
        "--out",
        str(run),
        "--model",
        str(release),
        "--batch-size",
        "2",
        "--json",
        "--no-registry",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = run / JOURNAL_FILE
    deadline = time.monotonic() + 120
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        done = journal.read_text().count('"kind":"encounter"') if journal.exists() else 0
        if done >= 3:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    total = len(rows(reference[0]))
    assert 3 <= done < total
    assert not (run / "encounters.csv").exists()
    complete = journal.read_bytes().count(b"\n") - 1  # lines after the header
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    summary = json.loads(out.stdout)
    assert summary["matched_now"] == total - complete
    lines = [json.loads(x) for x in journal.read_text().splitlines()[1:]]
    ids = [x["id"] for x in lines]
    assert len(ids) == len(set(ids)) == total  # none lost, none twice
    assert rows(run) == rows(reference[0])


def test_cli_refuses_a_missing_source(gallery, tmp_path):
    result = CliRunner().invoke(
        app,
        ["bulk", str(tmp_path / "nope"), "--index", str(gallery), "--out", str(tmp_path / "run")],
    )
    assert result.exit_code == 2 and "error:" in result.output and "no such folder" in result.output


def test_encounters_of_unknown_side_record_the_side_their_photo_shows(
    season, gallery, release, tmp_path
):
    """With the sides stripped from the season, a side head that is sure of 'left' makes
    every encounter search (and record) only the left flanks, and proposed new individuals
    are left flanks; --side-threshold 1 searches both and records no photo side."""
    import shutil

    import numpy as np
    import torch

    from reid.side import SideHead, save_to_release

    package = tmp_path / "package"
    shutil.copytree(season / "season", package)
    obs = package / "observations.csv"
    with obs.open() as f:
        table = list(csv.DictReader(f))
    assert any("side:" in r["observationTags"] for r in table)
    for r in table:
        r["observationTags"] = ""
    with obs.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    model = tmp_path / "model"
    shutil.copytree(release, model)
    from reid.release import load_release

    head = SideHead(load_release(model)[0].num_features)
    with torch.no_grad():
        head.linear.weight.zero_()
        head.linear.bias.fill_(float(np.log(0.99 / 0.01)))
    save_to_release(model, head.eval(), {"fitted_on": "test"})

    def run(name, **kw):
        opts = BulkOptions(model=model, batch_size=2, screen=0.0, report=False, registry=None,
                           show_progress=False, **kw)  # fmt: skip
        run_bulk(package, gallery, tmp_path / name, opts)
        return rows(tmp_path / name)

    sure = run("sure")
    assert {r["side"] for r in sure} == {"unknown"}
    assert {r["photo_side"] for r in sure} == {"left"}
    assert {r["matched_side"] for r in sure if r["decision"] == "known"} <= {"left"}
    with (tmp_path / "sure" / "new_individuals.csv").open() as f:
        proposed = list(csv.DictReader(f))
    assert proposed and {p["side"] for p in proposed} == {"left"}

    both = run("both", side_threshold=1.0)
    assert {r["photo_side"] for r in both} == {""}
    with pytest.raises(ReidError, match="side threshold"):
        run_bulk(package, gallery, tmp_path / "bad", BulkOptions(side_threshold=0.2))


def _with_flank_head(release, folder, logit):
    """A copy of ``release`` (the same weights: galleries enrolled with it still open)
    carrying a flank head that calls every cell torso (logit > 0) or none."""
    import shutil

    import torch

    from reid.boxhead import FlankHead, save_to_release
    from reid.release import load_release

    shutil.copytree(release, folder)
    model, _ = load_release(folder)
    head = FlankHead(model.num_features, hidden=2)
    with torch.no_grad():
        for p in head.parameters():
            p.zero_()
        head.out.bias.fill_(logit)
    save_to_release(folder, head.eval(), {"size": 128, "fitted_on": "test"})
    return folder


def _interrupted(run, keep):
    """Cut a finished run back to its journal's header and first ``keep`` encounters (as a
    run killed after them leaves it)."""
    journal = run / JOURNAL_FILE
    lines = journal.read_text().splitlines(keepends=True)
    journal.write_text("".join(lines[: 1 + keep]))
    for name in ("encounters.csv", "summary.json"):
        (run / name).unlink(missing_ok=True)


def test_locating_that_does_nothing_does_not_hold_a_resumed_run(season, gallery, release, tmp_path):
    """In a gallery enrolled without boxes a flank head crops nothing (Matcher.locate): a
    run started with --locate resumes with --no-locate, or after the head was refitted,
    and ends as it would have uninterrupted. In a gallery of boxed photos (the season's)
    locating changes what is matched, and the journal holds the run to it."""
    from dataclasses import replace

    from reid.data.manifest import read_manifest
    from reid.match import Matcher, enroll

    unboxed = tmp_path / "unboxed"
    records = [replace(r, bbox=None) for r in read_manifest(season / "gallery" / "manifest.csv")]
    enroll(records, unboxed, release, workers=1, calibration_sample=50, new_prior=0.8,
           show_progress=False)  # fmt: skip
    headed = _with_flank_head(release, tmp_path / "headed", 3.0)
    assert not Matcher.open(unboxed, headed).gallery_boxed()
    assert Matcher.open(gallery, headed).gallery_boxed()
    opts = BulkOptions(model=headed, batch_size=2, screen=0.0, report=False,
                       show_progress=False)  # fmt: skip
    off = replace(opts, locate=False)
    refitted = replace(opts, model=_with_flank_head(release, tmp_path / "refitted", -3.0))
    run = tmp_path / "run"
    total = run_bulk(season / "season", unboxed, run, opts).encounters
    whole = rows(run)
    _interrupted(run, 3)
    resumed = run_bulk(season / "season", unboxed, run, off)
    assert resumed.complete and resumed.matched_now == total - 3
    assert rows(run) == whole
    _interrupted(run, 5)
    assert run_bulk(season / "season", unboxed, run, refitted).matched_now == total - 5
    assert rows(run) == whole

    located = tmp_path / "located"
    run_bulk(season / "season", gallery, located, opts)
    _interrupted(located, 3)
    with pytest.raises(ReidError, match="another flank_head .* vs now null"):
        run_bulk(season / "season", gallery, located, off)
    with pytest.raises(ReidError, match="another flank_head"):
        run_bulk(season / "season", gallery, located, refitted)
