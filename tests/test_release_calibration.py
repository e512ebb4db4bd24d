"""A model release's calibration fitted on a labelled catalogue (reid calibrate), shipped
beside the weights and used by enroll for galleries too small to calibrate themselves."""

import json
import shutil
from dataclasses import replace

import pytest
import torch
from typer.testing import CliRunner

from reid.cli import app
from reid.data.manifest import write_manifest
from reid.errors import ReidError
from reid.match import MatchCalibration, Matcher, enroll
from reid.model import ModelConfig, build_model
from reid.release import read_manifest, save_release
from reid.release_calibration import (
    CALIBRATION_FILE,
    fit_on_catalogue,
    load_from_release,
    local_features_id,
    save_to_release,
)
from reid.synthetic.catalogue import write_catalogue
from reid.verify import SiftConfig

TINY = ModelConfig(
    backbone="test_efficientnet", embedding_dim=16, input_size=(32, 64), pretrained=None
)
runner = CliRunner()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("relcal")
    records = write_catalogue(
        root / "cat", species=("leopard",), individuals=3, images_per_side=3, seed=7, workers=1
    )
    torch.manual_seed(0)
    release = save_release(build_model(TINY).eval(), root / "model", name="tiny",
                           training_data="none", metrics={})  # fmt: skip
    calibration, info = fit_on_catalogue(records, release, sample=40, workers=1,
                                         show_progress=False)  # fmt: skip
    return root, records, release, calibration, info


def test_the_fit_on_a_catalogue_says_what_it_saw(setup):
    _, records, _, calibration, info = setup
    assert info["photos"] == len(records) == 18 and info["flanks"] == 6
    assert info["local_features"] == local_features_id(SiftConfig())
    assert calibration.stats["queries"] == 18  # every photo is a query (sample 40 > 18)
    assert calibration.decision is not None and calibration.screen is not None


def test_a_shipped_calibration_round_trips_and_is_checked(setup, tmp_path):
    _, _, release, calibration, info = setup
    folder = tmp_path / "rel"
    shutil.copytree(release, folder)
    assert load_from_release(folder, read_manifest(folder)) is None  # none shipped yet
    manifest = save_to_release(folder, calibration, {"fitted_on": "test", **info})
    assert manifest["calibration"]["weights_sha256"] == manifest["sha256"]
    back = load_from_release(folder, read_manifest(folder), SiftConfig())
    assert isinstance(back, MatchCalibration)
    assert back.to_dict() == json.loads(json.dumps(calibration.to_dict()))
    with pytest.raises(ReidError, match="other local features"):
        load_from_release(folder, read_manifest(folder), SiftConfig(n_features=100))
    other = dict(read_manifest(folder), sha256="0" * 64)
    with pytest.raises(ReidError, match="other weights"):
        load_from_release(folder, other)
    path = folder / CALIBRATION_FILE
    path.write_text(path.read_text().replace('"new_prior": 0.5', '"new_prior": 0.25'))
    with pytest.raises(ReidError, match="SHA-256"):
        load_from_release(folder, read_manifest(folder))


def test_a_gallery_of_single_photos_uses_the_releases_calibration(setup, tmp_path):
    _, records, release, calibration, info = setup
    singles = list({(r.individual_id, r.side): r for r in records}.values())  # 1 per flank
    with pytest.raises(ReidError, match="cannot calibrate"):
        enroll(singles, tmp_path / "a", release, show_progress=False, workers=1)
    folder = tmp_path / "rel"
    shutil.copytree(release, folder)
    with pytest.raises(ReidError, match="ships no calibration"):
        enroll(records, tmp_path / "b", folder, show_progress=False, workers=1,
               calibration="release")  # fmt: skip
    save_to_release(folder, calibration, info)
    summary = enroll(singles, tmp_path / "c", folder, show_progress=False, workers=1,
                     new_prior=0.3)  # fmt: skip
    assert summary.calibration["source"] == "release"
    matcher = Matcher.open(tmp_path / "c", folder)
    assert matcher.calibration.new_prior == 0.3
    assert matcher.calibration.pair.weights == calibration.pair.weights
    # A gallery that can calibrate itself does, unless told to use the release's.
    own = enroll(records, tmp_path / "d", folder, show_progress=False, workers=1)
    assert own.calibration["source"] == "gallery"
    shipped = enroll(records, tmp_path / "e", folder, show_progress=False, workers=1,
                     calibration="release")  # fmt: skip
    assert shipped.calibration["source"] == "release"
    with pytest.raises(ReidError, match="not one of"):
        enroll(records, tmp_path / "f", folder, show_progress=False, calibration="both")


def test_cli_calibrate_saves_into_the_release(setup, tmp_path):
    root, _, release, *_ = setup
    folder = tmp_path / "rel"
    shutil.copytree(release, folder)
    res = runner.invoke(app, ["calibrate", str(root / "cat"), "--model", str(folder),
                              "--train-ratio", "0.7", "--sample", "20", "--workers", "1",
                              "--save", "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    out = json.loads(res.output[res.output.index("{") :])
    assert out["saved"] and "held out by split 0.7" in out["fitted_on"]
    assert out["photos"] < 18  # only the held-out individuals
    assert read_manifest(folder)["calibration"]["photos"] == out["photos"]
    bad = runner.invoke(app, ["calibrate", str(root / "cat"), "--model", str(folder),
                              "--train-ratio", "1.5"])  # fmt: skip
    assert bad.exit_code != 0 and "Traceback" not in bad.output
    kind = runner.invoke(app, ["calibrate", str(root / "cat"), "--model", str(folder),
                               "--local", "nope"])  # fmt: skip
    assert kind.exit_code != 0 and "unknown local features" in kind.output


def test_the_default_release_ships_a_calibration_for_its_weights_and_local_features():
    """models/bigcat-default carries a calibration fitted on real photos (reid calibrate):
    it is read back for the release's own weights and the default local features, with
    the known/new decision the matcher expects (no weights are loaded)."""
    from reid.local import local_config
    from reid.match import DECISION_CLASSES, DECISION_FEATURES
    from reid.methods.embedding import DEFAULT_MODEL

    manifest = read_manifest(DEFAULT_MODEL)
    if "calibration" not in manifest:
        pytest.skip("the default release ships no calibration")
    cal = load_from_release(DEFAULT_MODEL, manifest, local_config(None))
    assert cal.decision.classes == DECISION_CLASSES and cal.decision.names == DECISION_FEATURES
    assert all(w >= 0 for w in cal.pair.weights) and cal.pair.weights[0] > 0
    assert manifest["calibration"]["stats"]["queries"] == cal.stats["queries"] > 0
    # strong evidence for the best candidate -> known; none -> new
    strong = [[6.0, 8.0, 0.9, 4.0]]
    weak = [[-8.0, 0.1, 0.2, 0.0]]
    top, new = DECISION_CLASSES.index("top"), DECISION_CLASSES.index("new")
    assert cal.decision.predict(strong)[0][top] > 0.9
    assert cal.decision.predict(weak)[0][new] > 0.9


def test_a_gallery_of_bursts_does_not_calibrate_itself(setup, tmp_path):
    """Each flank's second photo a near-identical frame of its first (a camera trap's
    burst): every calibration query's own flank is left out with it, so no "known" query
    is left. Enroll must not store the one-class fit (P(new) ~1 for any query): it uses
    the release's calibration, or refuses as for a gallery too small to calibrate."""
    _, records, release, calibration, info = setup
    singles = list({(r.individual_id, r.side): r for r in records}.values())  # 1 per flank
    frames = []
    for k, r in enumerate(singles):
        copy = tmp_path / "burst" / f"frame-{k}.png"
        copy.parent.mkdir(exist_ok=True)
        shutil.copy(r.path, copy)
        frames.append(replace(r, path=copy))
    bursts = [*singles, *frames]  # 6 flanks of 2 photos: "eligible" by count
    with pytest.raises(ReidError, match="cannot calibrate: only 0 of 12 .* near-duplicate"):
        enroll(bursts, tmp_path / "a", release, show_progress=False, workers=1)
    folder = tmp_path / "rel"
    shutil.copytree(release, folder)
    save_to_release(folder, calibration, info)
    summary = enroll(bursts, tmp_path / "b", folder, show_progress=False, workers=1)
    assert summary.calibration["source"] == "release"
    assert "near-duplicate" in summary.calibration["gallery_refused"]
    matcher = Matcher.open(tmp_path / "b", folder)
    assert matcher.calibration.pair.weights == calibration.pair.weights
    assert matcher.calibration.decision.counts == calibration.decision.counts
    write_manifest(bursts, tmp_path / "cat.csv")
    res = runner.invoke(app, ["enroll", str(tmp_path / "cat.csv"), "--index", str(tmp_path / "c"),
                              "--model", str(folder), "--workers", "1"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "the gallery cannot calibrate itself" in res.output
    assert "the model release's calibration" in res.output
