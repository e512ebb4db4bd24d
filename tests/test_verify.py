"""Geometric verification: invariants on textures with known warps."""

import cv2
import numpy as np
import pytest

from reid.verify import (
    LocalFeatures,
    SiftConfig,
    _unique_locations,
    extract,
    scores_against,
    tentative_matches,
    verify_many,
)


def texture(seed: int, size=(240, 480)) -> np.ndarray:
    """A random blob texture with plenty of corners, greyscale uint8."""
    rng = np.random.default_rng(seed)
    img = np.full(size, 200, np.uint8)
    for _ in range(120):
        c = (int(rng.integers(0, size[1])), int(rng.integers(0, size[0])))
        axes = (int(rng.integers(4, 18)), int(rng.integers(3, 10)))
        cv2.ellipse(img, c, axes, float(rng.uniform(0, 180)), 0, 360, int(rng.integers(0, 90)), -1)
    return cv2.GaussianBlur(img, (3, 3), 0)


def warp(img: np.ndarray, H: np.ndarray) -> np.ndarray:
    return cv2.warpPerspective(img, H, (img.shape[1], img.shape[0]), borderValue=200)


H_MILD = np.array([[0.95, 0.04, 12.0], [-0.03, 1.02, 5.0], [1e-5, 0.0, 1.0]])


def test_warped_copy_matches_and_unrelated_does_not():
    a = texture(1)
    fa, fb, fc = extract(a), extract(warp(a, H_MILD)), extract(texture(2))
    same, other = verify_many(fa, [fb, fc])
    assert same.inliers >= 40
    assert other.inliers == 0
    assert same.homography is not None


def test_inlier_coordinates_follow_the_known_warp():
    a = texture(3)
    b = warp(a, H_MILD)
    (v,) = verify_many(extract(a), [extract(b)])
    projected = cv2.perspectiveTransform(v.query_xy[None].astype(np.float64), H_MILD)[0]
    err = np.linalg.norm(projected - v.gallery_xy, axis=1)
    assert np.median(err) < 2.0


def test_coordinates_are_in_original_pixels_when_downscaled():
    a = cv2.resize(texture(4), (960, 480), interpolation=cv2.INTER_CUBIC)  # above max_side
    b = warp(a, H_MILD)
    fa, fb = extract(a), extract(b)
    assert fa.scale == pytest.approx(0.5)
    (v,) = verify_many(fa, [fb])
    projected = cv2.perspectiveTransform(v.query_xy[None].astype(np.float64), H_MILD)[0]
    assert np.median(np.linalg.norm(projected - v.gallery_xy, axis=1)) < 4.0


def test_mirrored_flank_is_not_a_match():
    """A horizontally mirrored flank is not the other side of the same animal."""
    a = texture(5)
    mirrored = np.ascontiguousarray(a[:, ::-1])
    config = SiftConfig()
    (v,) = verify_many(extract(a, config), [extract(mirrored, config)], config)
    assert v.inliers == 0


def test_scores_are_inliers_plus_a_tie_breaker_below_one():
    a = texture(6)
    fa = extract(a)
    gallery = [extract(warp(a, H_MILD)), extract(texture(7))]
    scores = scores_against(fa, gallery)
    inliers = [v.inliers for v in verify_many(fa, gallery)]
    assert np.array_equal(np.floor(scores), inliers)
    assert scores[0] > scores[1]


def test_deterministic():
    a, b = texture(8), warp(texture(8), H_MILD)
    s1 = scores_against(extract(a), [extract(b)])
    s2 = scores_against(extract(a), [extract(b)])
    assert np.array_equal(s1, s2)


def test_blank_image_has_no_features_and_scores_zero():
    blank = np.full((200, 400), 128, np.uint8)
    fb = extract(blank)
    assert len(fb) == 0
    assert scores_against(fb, [extract(texture(9))])[0] == 0
    assert scores_against(extract(texture(9)), [fb])[0] == 0


def test_sift_method_is_symmetric_and_independent_of_worker_count(tmp_path):
    from reid.data.records import ImageRecord
    from reid.methods.sift import SiftMethod

    records = []
    for i, img in enumerate([texture(10), warp(texture(10), H_MILD), texture(11), texture(12)]):
        path = tmp_path / f"{i}.png"
        cv2.imwrite(str(path), img)
        records.append(ImageRecord(path, "A" if i < 2 else f"B{i}", "tiger", "left"))
    one = SiftMethod(workers=1).similarity(records)
    two = SiftMethod(workers=2).similarity(records)
    assert np.array_equal(one, two)
    assert np.array_equal(one, one.T)
    assert one[0, 1] >= 40 and one[0, 1] == one.max()


def _naive_tentative(query, gallery):
    """Ratio test + mutual nearest neighbour, one gallery image and one keypoint at a time."""
    config = SiftConfig()
    out = []
    for g in gallery:
        pairs = []
        if len(query) >= 2 and len(g) >= 1:
            d = np.sqrt(np.maximum(2 - 2 * (query.desc @ g.desc.T).astype(np.float64), 0))
            for i in range(len(query)):
                order = np.argsort(d[i], kind="stable")
                first = d[i, order[0]]
                second = d[i, order[1]] if len(g) > 1 else np.inf
                mutual = int(np.argmin(d[:, order[0]])) == i
                if first < config.ratio * second and (mutual or not config.mutual):
                    pairs.append((i, int(order[0])))
        pairs = np.array(pairs, np.int64).reshape(-1, 2)
        out.append(_unique_locations(pairs, query.xy, g.xy))
    return out


def test_tentative_matches_equal_a_one_pair_at_a_time_reference():
    """The vectorised matcher (padded blocks, one product per block) finds exactly the
    matches of the plain definition, with images of unequal keypoint counts (padding)."""
    feats = [extract(texture(s)) for s in (11, 12)]
    a = feats[0]
    b = extract(warp(texture(11), H_MILD))
    cut = LocalFeatures(b.xy[:57], b.desc[:57], b.scale)  # fewer keypoints: padded
    gallery = [b, feats[1], cut]
    for got, want in zip(tentative_matches(a, gallery), _naive_tentative(a, gallery), strict=True):
        assert {tuple(p) for p in got} == {tuple(p) for p in want}
    assert len(tentative_matches(a, gallery)[0]) >= 40
